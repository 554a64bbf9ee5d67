"""Runs from Python, as the command line makes them: the config ``seqtrain OVERRIDES`` would
compose (and Python values as config values), a run trained into a folder claimed first so that
two fits never share one, and a finished run opened as a ``Run``. Bad input raises one
``SeqtrainError`` whose message is the line the command line prints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from seqtrain.errors import SeqtrainError
from seqtrain.files import save_config, write_text


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config ``seqtrain OVERRIDES`` would run, checked the same way (one ``SeqtrainError``
    naming the key at fault)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from seqtrain.cli import check_group_choices, check_overrides

    overrides = list(overrides or [])
    sweeps = [o for o in overrides if o.startswith("-")]
    if sweeps:
        raise SeqtrainError(f"train: {sweeps[0]!r}: flags are for the command line; pass key=value overrides")
    sweep = _first_sweep(overrides)
    if sweep:
        raise SeqtrainError(f"{sweep}: a sweep is not a setting of one model; give one value "
                            "(search over values with GridSearchCV, or the command line's -m)")
    with _COMPOSE_LOCK, _own_global_hydra():
        problem = check_group_choices(overrides) or check_overrides(overrides)
        if problem:
            raise SeqtrainError(problem)
        with initialize_config_module("seqtrain.conf", version_base="1.3"):
            return hydra_compose("config", overrides=overrides)


def _first_sweep(overrides: list[str]) -> str | None:
    """The first override that is a sweep (``key=a,b``, ``choice(...)``, ``range(...)``); None
    also when they do not parse (check_overrides names that)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # hydra's OverrideParseException
        return None
    return next((o.input_line for o in parsed if o.is_sweep_override()), None)


# Hydra's config search path is one process-wide GlobalHydra: composition takes turns
_COMPOSE_LOCK = threading.RLock()


@contextlib.contextmanager
def _own_global_hydra():
    """GlobalHydra cleared for seqtrain's composition, then given back as it was (a Hydra app
    that calls ``fit`` keeps its own)."""
    from hydra.core.global_hydra import GlobalHydra

    saved = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        GlobalHydra.instance().hydra = saved


def train(overrides: list[str] | None = None, run_dir: str | Path | None = None) -> Run:
    """Train one run, exactly as ``seqtrain OVERRIDES`` would, into ``run_dir`` (default: a new
    ``outputs/DATE/TIME`` folder, like the command line's); the finished ``Run``.

    >>> run = seqtrain.train(["model=tcn", "trainer.max_epochs=5"])
    >>> run.metrics["test"]["test_acc"], run.path
    """
    cfg = compose(overrides)
    if run_dir is None:
        run_dir = new_run_dir()  # made and claimed here
    elif (run_dir := Path(run_dir).expanduser()).joinpath(".hydra").exists():
        raise SeqtrainError(f"run_dir: {run_dir} already holds a run; choose a new folder")
    return train_config(cfg, list(overrides or []), run_dir)


def new_run_dir() -> Path:
    """A fresh ``outputs/DATE/TIME`` folder, claimed (made) here so that two fits started in the
    same microsecond, in one process or several, never share it."""
    stamp = Path("outputs") / dt.datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    for n in range(1000):
        run_dir = stamp.with_name(stamp.name + (f"-{n}" if n else ""))
        try:
            run_dir.mkdir(parents=True)
            (run_dir / ".hydra").mkdir()  # claimed, as a given run_dir is
            return run_dir
        except FileExistsError:
            continue
    raise SeqtrainError(f"run_dir: no free folder beside {stamp}; give run_dir")


def train_config(cfg: DictConfig, overrides: list[str], run_dir: Path) -> Run:
    """Train the composed ``cfg`` into ``run_dir`` (its config saved as the command line saves
    it; ``overrides`` recorded beside it) and open the finished run."""
    from seqtrain.console import logging_into
    from seqtrain.run.train import train as train_run

    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    save_config(run_dir / ".hydra" / "config.yaml", cfg)
    write_text(run_dir / ".hydra" / "overrides.yaml", json.dumps(overrides) + "\n")
    with logging_into(run_dir / "train.log"):
        train_run(cfg, run_dir)
    return load(run_dir)


def release_run_dir(run_dir: Path, created: bool) -> None:
    """Undo a claimed run folder: removed when this fit made it, else emptied (it was empty
    when claimed, and everything in it since is this fit's)."""
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for child in run_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink()


def free_run_dir(run_dir: str | Path | None) -> Path | None:
    """``run_dir`` as an absolute Path, refused when it exists and is not empty (an earlier
    run, or anything else of the user's, is never written over); None for a new folder per fit."""
    if run_dir is None:
        return None
    run_dir = Path(run_dir).expanduser().absolute()
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        held = "already holds a run" if (run_dir / ".hydra").exists() else "exists and is not empty"
        raise SeqtrainError(f"run_dir: {run_dir} {held}; choose a new folder, or leave run_dir "
                            "unset for a new outputs/DATE/TIME folder per fit")
    return run_dir


def claim_run_dir(run_dir: str | Path | None) -> tuple[Path, bool]:
    """The run folder (``run_dir``, or a new ``outputs/DATE/TIME``), claimed by making its
    ``.hydra`` (which fails when another fit made it first, so two processes never write into
    one folder), and whether this fit made the folder."""
    run_dir = free_run_dir(run_dir)
    if run_dir is None:
        return new_run_dir().absolute(), True
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ".hydra").mkdir()
    except FileExistsError:
        raise SeqtrainError(f"run_dir: {run_dir} is being written by another fit; choose a new "
                            "folder, or leave run_dir unset") from None
    return run_dir, created


def literal(name: str) -> str:
    """A column name as a config value read back verbatim: OmegaConf resolves ``${...}``, and
    reads the backslashes just before one as escapes (``\\${`` is a backslash, then ``${``)."""
    return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", name)


def time_value(value):
    """A time as a config value: ISO text for timestamps, the number otherwise."""
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    return value.item() if isinstance(value, np.generic) else value


def override_value(value) -> str:
    """A Python value as the text of a ``key=value`` override."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return str(value)


def load(path: str | Path) -> Run:
    """The finished run in folder ``path``."""
    return Run(path)


class Run:
    """A run folder: its ``config``, ``metrics`` (metrics.json), ``data_state`` and ``predict``."""

    def __init__(self, path: str | Path):
        from seqtrain.data.state import DataState
        from seqtrain.run.folders import run_config

        self.path = Path(path).expanduser().absolute()  # still found after os.chdir
        self.config = run_config(self.path)
        metrics = self.path / "metrics.json"
        if not metrics.exists():
            raise SeqtrainError(f"run: {self.path} has not finished (no metrics.json); "
                                f"continue it with  seqtrain resume={self.path}")
        self.metrics: dict = json.loads(metrics.read_text())
        # a walk-forward run holds one model per fold (``folds``), each a run of its own
        self.walk_forward = self.metrics.get("eval") == "walk_forward"
        self.folds = [Run(p) for p in sorted(self.path.glob("fold_*"))] if self.walk_forward else []
        # a cpcv run holds one model per split (``splits``), each a run of its own
        self.cpcv = self.metrics.get("eval") == "cpcv"
        self.splits = [Run(p) for p in sorted(self.path.glob("split_*"))] if self.cpcv else []
        self.data_state = (None if self.walk_forward or self.cpcv
                           else DataState.load(self.path / "data_state.json"))
        self._predictors: dict = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def predictor(self, ckpt: str = "best", device: str = "auto"):
        from seqtrain.run.predict import Predictor

        key = (ckpt, device)
        if key not in self._predictors:
            self._predictors[key] = Predictor.from_run(self.path, ckpt, device=device)
        return self._predictors[key]

    def refuse_many_models(self, pick_fold: str, pick_split: str) -> None:
        """One line where the run holds one model per walk-forward fold or cpcv split, saying how
        to pick one (``pick_fold``, ``pick_split``)."""
        if self.walk_forward:
            raise SeqtrainError(f"predict: {self.path} is a walk-forward run with one model per fold; "
                                f"predict with {pick_fold}")
        if self.cpcv:
            raise SeqtrainError(f"predict: {self.path} is a cpcv run with one model per split; "
                                f"predict with {pick_split}")

    def predict(self, data: pd.DataFrame | str | Path, newest: bool = False, allow_new_series: bool = False,
                ckpt: str = "best", device: str = "auto", *, last: bool = False) -> pd.DataFrame:
        """Predictions of every window of ``data`` (a DataFrame with the training table's
        columns, time and series possibly as the index, or a Parquet path), checked against the
        training table's schema; ``newest``: only the newest window of each series (``last``:
        its older spelling). Columns as in ``predictions.parquet``: ``time`` (the label row's,
        missing beyond the table), ``window_end``, ``step``, the series, ``y_pred``,
        ``prob_<class>`` or quantiles, and ``y_true`` where the table holds it."""
        self.refuse_many_models("one of run.folds (the last fold saw the most data)", "one of run.splits")
        predictor = self.predictor(ckpt, device)
        if isinstance(data, (str, Path)):
            from seqtrain.data import source

            data = source.open_dataset(data).to_table().to_pandas()
        return predictor.predict_frame(data, newest=newest or last, allow_new_series=allow_new_series)
