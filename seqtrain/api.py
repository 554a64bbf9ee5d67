"""seqtrain from Python: the command line's code path, called from a pipeline.

``train`` composes the same config as ``seqtrain key=value ...`` and trains into a run folder;
``load`` opens a finished run; ``Run.predict`` is ``seqtrain predict`` on a DataFrame.
``SequenceModel`` wraps all three as a scikit-learn style estimator over time-indexed frames.
Bad input raises one ``SeqtrainError`` whose message is the line the command line prints.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from seqtrain.errors import SeqtrainError

log = logging.getLogger("seqtrain")


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
    problem = check_group_choices(overrides) or check_overrides(overrides)
    if problem:
        raise SeqtrainError(problem)
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def train(overrides: list[str] | None = None, run_dir: str | Path | None = None) -> Run:
    """Train one run, exactly as ``seqtrain OVERRIDES`` would, into ``run_dir`` (default: a new
    ``outputs/DATE/TIME`` folder, like the command line's); the finished ``Run``.

    >>> run = seqtrain.train(["model=tcn", "trainer.max_epochs=5"])
    >>> run.metrics["test"]["test_acc"], run.path
    """
    from seqtrain.cli import _quiet_libraries
    from seqtrain.training import train as train_run

    cfg = compose(overrides)
    if run_dir is None:
        run_dir = Path("outputs") / dt.datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    run_dir = Path(run_dir).expanduser()
    if (run_dir / ".hydra").exists():
        raise SeqtrainError(f"run_dir: {run_dir} already holds a run; choose a new folder")
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    (run_dir / ".hydra" / "overrides.yaml").write_text(json.dumps(list(overrides or [])) + "\n")
    _quiet_libraries()
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        train_run(cfg, run_dir)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
    return load(run_dir)


def load(path: str | Path) -> Run:
    """The finished run in folder ``path``."""
    return Run(path)


class Run:
    """A run folder: its ``config``, ``metrics`` (metrics.json), ``data_state`` and ``predict``."""

    def __init__(self, path: str | Path):
        from seqtrain.data.state import DataState

        self.path = Path(path).expanduser()
        config = self.path / ".hydra" / "config.yaml"
        if not config.exists():
            raise SeqtrainError(f"run: {self.path} is not a seqtrain run folder (no .hydra/config.yaml)")
        self.config = OmegaConf.load(config)
        metrics = self.path / "metrics.json"
        if not metrics.exists():
            raise SeqtrainError(f"run: {self.path} has not finished (no metrics.json); "
                                f"continue it with  seqtrain resume={self.path}")
        self.metrics: dict = json.loads(metrics.read_text())
        # a walk-forward run holds one model per fold (``folds``), each a run of its own
        self.walk_forward = self.metrics.get("eval") == "walk_forward"
        self.folds = [Run(p) for p in sorted(self.path.glob("fold_*"))] if self.walk_forward else []
        self.data_state = None if self.walk_forward else DataState.load(self.path / "data_state.json")
        self._predictors: dict = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def predictor(self, ckpt: str = "best", device: str = "auto"):
        from seqtrain.predict import Predictor

        key = (ckpt, device)
        if key not in self._predictors:
            self._predictors[key] = Predictor.from_run(self.path, ckpt, device=device)
        return self._predictors[key]

    def predict(self, data: pd.DataFrame | str | Path, last: bool = False, allow_new_series: bool = False,
                ckpt: str = "best", device: str = "auto") -> pd.DataFrame:
        """Predictions of every window of ``data`` (a DataFrame with the training table's
        columns, time and series possibly as the index, or a Parquet path), checked against the
        training table's schema; ``last``: only the newest window of each series. Columns as in
        ``predictions.parquet``: ``time`` (the label row's, missing beyond the table),
        ``window_end``, ``step``, the series, ``y_pred``, ``prob_<class>`` or quantiles, and
        ``y_true`` where the table holds it."""
        if self.walk_forward:
            raise SeqtrainError(f"predict: {self.path} is a walk-forward run with one model per fold; "
                                "predict with one of run.folds (the last fold saw the most data)")
        predictor = self.predictor(ckpt, device)
        if isinstance(data, (str, Path)):
            from seqtrain.data import source

            data = source.open_dataset(data).to_table().to_pandas()
        return predictor.predict_frame(data, last=last, allow_new_series=allow_new_series)


class SequenceModel:
    """A scikit-learn style estimator for a pipeline's model stage.

    ``X`` is a DataFrame of feature columns indexed by time, or by (time, series) (either
    order); ``y`` a Series on the same index. ``fit`` trains a run (the command line's code path,
    in ``run_dir`` or a new ``outputs/DATE/TIME`` folder); ``predict(X)`` gives, for every row
    of ``X``, the forecast made at that row (for ``horizon`` rows later; NaN where the row has
    too little history), on ``X``'s index.

    Settings: ``model`` (lstm, gru, tcn, ...); ``task``; ``seq_length``, ``horizon``,
    ``output_steps``, ``batch_size``, ``max_epochs``, ``lr``, ``seed``; any other keyword
    is a model argument (``hidden_size=128``); ``overrides`` adds raw config overrides
    (``["scheduler=cosine"]``). The target's own history is not an input unless
    ``target_as_input=True`` (then ``X`` at predict time must hold it as a column named like ``y``).

    Without ``X_val``, the rows of ``X`` are split chronologically as by the command line
    (``split_val``, ``split_test`` shares); with it, ``X_val``'s earlier half validates (early
    stopping, best checkpoint) and its later half is the held-out test of the run's report.
    """

    TRAINING_KEYS = {"seq_length": "data.seq_length", "horizon": "data.horizon",
                     "output_steps": "data.output_steps", "batch_size": "data.batch_size",
                     "max_epochs": "trainer.max_epochs", "lr": "optim.lr", "seed": "seed",
                     "target_as_input": "data.target_as_input", "split_val": "data.split.val",
                     "split_test": "data.split.test", "precision": "trainer.precision",
                     "progress_bar": "progress_bar", "patience": "early_stopping.patience"}

    def __init__(self, model: str = "lstm", task: str = "classification", run_dir: str | Path | None = None,
                 overrides: list[str] | None = None, target_as_input: bool = False, **settings):
        self.model, self.task, self.run_dir = model, task, run_dir
        self.overrides = list(overrides or [])
        self.settings = {"target_as_input": target_as_input, **settings}
        self.run: Run | None = None
        self.index_names: list[str] | None = None

    def get_params(self, deep: bool = True) -> dict:
        return {"model": self.model, "task": self.task, "run_dir": self.run_dir,
                "overrides": self.overrides, **self.settings}

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: pd.Series, X_val: pd.DataFrame | None = None,
            y_val: pd.Series | None = None) -> SequenceModel:
        time_col, group_col = _index_columns(X)
        if not isinstance(y, pd.Series):
            raise SeqtrainError(f"y: a pandas Series on X's index is needed, got {type(y).__name__}")
        target = str(y.name) if y.name is not None else "target"
        if target in X.columns:
            raise SeqtrainError(f"y: its name {target!r} is also a column of X; rename one of them")
        table = _as_table(X, y, target)
        overrides = [f"model={self.model}", f"task={self.task}", "data=parquet",
                     f"data.target={target}", f"data.time_col={time_col}",
                     f"data.group_col={group_col if group_col else 'null'}",
                     f"data.features=[{','.join(map(str, X.columns))}]"]
        if X_val is not None:
            if y_val is None:
                raise SeqtrainError("fit: X_val given without y_val")
            val = _as_table(X_val, y_val.rename(target), target)
            times = np.unique(val[time_col].to_numpy())
            if len(times) < 2 or times[0] <= table[time_col].to_numpy().max():
                raise SeqtrainError("fit: X_val must follow X in time (every X_val row after the last "
                                    "X row), with at least two timestamps")
            overrides += [f"data.split.val_start={_time_text(times[0])}",
                          f"data.split.test_start={_time_text(times[len(times) // 2])}"]
            table = pd.concat([table, val], ignore_index=True)
        for key, value in self.settings.items():
            path = self.TRAINING_KEYS.get(key, f"model.{key}")
            overrides.append(f"{path}={_override_value(value)}")
        run_dir = Path(self.run_dir or Path("outputs") / dt.datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f"))
        data_path = run_dir / "data" / "train.parquet"
        data_path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(data_path, index=False)
        self.run = train([*overrides, f"data.path={data_path}", *self.overrides], run_dir)
        self.index_names = [time_col, *([group_col] if group_col else [])]
        return self

    # -- predicting -----------------------------------------------------------------------------

    def _forecasts(self, X: pd.DataFrame) -> pd.DataFrame:
        if self.run is None:
            raise SeqtrainError("predict: the model is not fitted; call fit first")
        time_col, group_col = _index_columns(X)
        frame = X.reset_index()
        state = self.run.data_state
        if (time_col, group_col) != (state.time_col, state.group_col):
            raise SeqtrainError(f"X: indexed by {time_col!r}, {group_col!r}; the model was fit on "
                                f"{state.time_col!r}, {state.group_col!r}")
        return self.run.predict(frame)

    def _on_index(self, X: pd.DataFrame, forecasts: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
        """Forecast columns for each row of ``X`` (the window ending at it), on ``X``'s index."""
        state = self.run.data_state
        keys = ["window_end", *([state.group_col] if state.group_col else [])]
        steps = state.window.output_steps
        wide = forecasts.pivot_table(index=keys, columns="step", values=columns, aggfunc="first")
        if steps == 1:
            wide.columns = [c for c, _ in wide.columns]
        else:
            wide.columns = [f"{c}_step{s}" for c, s in wide.columns]
        rows = X.reset_index()[[state.time_col, *([state.group_col] if state.group_col else [])]]
        rows = rows.rename(columns={state.time_col: "window_end"})
        rows["window_end"] = rows["window_end"].astype(forecasts["window_end"].dtype)
        out = rows.merge(wide.reset_index(), on=keys, how="left")
        out.index = X.index
        return out.drop(columns=keys)

    def predict(self, X: pd.DataFrame) -> pd.Series | pd.DataFrame:
        """The point forecast (class, or value) made at each row of ``X``: a Series on ``X``'s
        index (a DataFrame with a column per step when ``output_steps > 1``); NaN where a row
        has too little history."""
        out = self._on_index(X, self._forecasts(X), ["y_pred"])
        return out.iloc[:, 0].rename("y_pred") if out.shape[1] == 1 else out

    def predict_proba(self, X: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities made at each row of ``X``: one column per class, on ``X``'s index."""
        if self.task != "classification":
            raise SeqtrainError("predict_proba: only for task=classification")
        forecasts = self._forecasts(X)
        columns = [c for c in forecasts.columns if c.startswith("prob_")]
        out = self._on_index(X, forecasts, columns)
        out.columns = [c.removeprefix("prob_") for c in out.columns]
        return out

    # -- saving ---------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """The fitted model in folder ``path``: its run's config, data state, best checkpoint,
        metrics and these settings (not the training data)."""
        if self.run is None:
            raise SeqtrainError("save: the model is not fitted; call fit first")
        path = Path(path).expanduser()
        if path.exists() and any(path.iterdir()):
            raise SeqtrainError(f"save: {path} exists and is not empty; choose a new folder")
        for name in (".hydra/config.yaml", "data_state.json", "metrics.json", "checkpoints/best.ckpt"):
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.run.path / name, path / name)
        (path / "sequence_model.json").write_text(json.dumps(
            {"model": self.model, "task": self.task, "settings": self.settings,
             "overrides": self.overrides, "index_names": self.index_names}, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SequenceModel:
        path = Path(path).expanduser()
        saved = path / "sequence_model.json"
        if not saved.exists():
            raise SeqtrainError(f"load: {path} holds no saved SequenceModel (no sequence_model.json)")
        info = json.loads(saved.read_text())
        model = cls(info["model"], info["task"], overrides=info["overrides"], **info["settings"])
        model.run, model.index_names = Run(path), info["index_names"]
        return model


def _index_columns(X: pd.DataFrame) -> tuple[str, str | None]:
    """(time column, series column or None) from ``X``'s index: time, or (time, series) in
    either order; the time level is the one holding timestamps or, failing that, the first."""
    if not isinstance(X, pd.DataFrame):
        raise SeqtrainError(f"X: a pandas DataFrame of feature columns is needed, got {type(X).__name__}")
    names = list(X.index.names)
    if len(names) > 2 or any(n is None for n in names):
        raise SeqtrainError("X: index it by time, or by (time, series), with named levels "
                            "(e.g. X.set_index(['time', 'symbol']))")
    if len(names) == 1:
        return str(names[0]), None
    kinds = [pd.api.types.is_datetime64_any_dtype(X.index.get_level_values(i)) for i in range(2)]
    time_level = 1 if kinds[1] and not kinds[0] else 0
    return str(names[time_level]), str(names[1 - time_level])


def _as_table(X: pd.DataFrame, y: pd.Series, target: str) -> pd.DataFrame:
    if not X.index.equals(y.index):
        raise SeqtrainError("y: its index differs from X's; give y on the same (time[, series]) index")
    return X.assign(**{target: y.to_numpy()}).reset_index()


def _time_text(value) -> str:
    """A time as an override value: ISO text for timestamps, the number otherwise."""
    if isinstance(value, np.datetime64):
        return f"'{pd.Timestamp(value).isoformat()}'"
    return str(value)


def _override_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return str(value)
