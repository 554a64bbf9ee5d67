"""Combinatorial purged cross-validation (``eval=cpcv``; López de Prado, *Advances in Financial
Machine Learning*, ch. 12), beside walk-forward.

The distinct timestamps of the table are cut into N chronological groups (``eval.groups``).
Every choice of k of them (``eval.test_groups``) is a test set: C(N, k) splits, each a whole
training run in ``RUN/split_NN/`` on the other groups, split by periods (``data.split.periods``,
``windows.cpcv_periods``): labels purged on both sides of every test group, no training window
reading a test row, ``data.embargo`` rows after each test group, validation the end of the last
training group. Each group is tested in C(N-1, k-1) splits; path j takes every group's j-th test
occurrence, so the φ = k/N·C(N, k) paths each cover the data once (walk-forward gives one). The
run folder gets every split's test predictions (``predictions.parquet`` with ``split`` and
``group`` columns), ``splits.csv``, ``paths.csv`` (each path's main metric, skill against its
best baseline and, for direction labels, the trading view's Sharpe), ``metrics.json`` with the
paths' quantiles and, over every split's test windows together, the Brier score and ECE
(classification) or the conformal bands' coverage and width (regression), each split calibrated
on its own validation block, and ``plots/paths.png``.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from seqtrain.data import source
from seqtrain.data.columns import in_zone, time_values, time_zone
from seqtrain.data.splits import cpcv_group_edges, cpcv_paths, cpcv_periods, cpcv_splits
from seqtrain.data.windows import SPLIT_NAMES
from seqtrain.errors import SeqtrainError
from seqtrain.files import write_csv, write_json, write_parquet
from seqtrain.report.baselines import pooled_skill
from seqtrain.report.trading import trading_report
from seqtrain.run.parallel import FoldJob, train_side_by_side
from seqtrain.run.walk_forward import (
    _text,
    pooled_calibration,
    pooled_notes,
    train_in_folder,
    trained_in_folder,
    uniqueness_column,
)

log = logging.getLogger("seqtrain")

QUANTILES = (5, 25, 50, 75, 95)  # of each figure over the paths, in percent
ONE_PATH = ("walk-forward tests each period once, in one order: one path, one number; CPCV's paths "
            "are as many draws of the same backtest from models trained on different data")


def check_cpcv(settings) -> None:
    """The ``eval`` keys of a CPCV run, before any data is read."""
    groups, k = settings.groups, settings.test_groups
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 2:
        raise SeqtrainError(f"eval.groups: {groups!r}; an integer >= 2 (chronological groups)")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < groups:
        raise SeqtrainError(f"eval.test_groups: {k!r}; an integer from 1 to eval.groups - 1 = {groups - 1}")
    share = settings.val_share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise SeqtrainError(f"eval.val_share: {share!r}; a share of the last training group in (0, 1)")


def split_configs(cfg: DictConfig, data_path: str) -> tuple[np.ndarray, list[tuple[dict, DictConfig]]]:
    """The first timestamp of each group (and the last timestamp), and each split's test groups,
    periods and run config: this run's config split by those periods, evaluated as a single split."""
    settings, split = cfg.eval, cfg.data.split
    if split.get("by", "time") != "time":
        raise SeqtrainError("eval=cpcv: groups cut one time axis; set data.split.by=time")
    set_keys = [k for k in ("val_start", "test_start", "train_start", "test_end", "periods")
                if split.get(k) is not None]
    if set_keys:
        raise SeqtrainError(f"eval=cpcv: its groups cut the time axis; drop data.split.{set_keys[0]}")
    table = source.read_columns(data_path, [cfg.data.time_col])
    axis = np.unique(time_values(table.column(cfg.data.time_col), cfg.data.time_col))
    zone = time_zone(table.schema, cfg.data.time_col)
    edges = cpcv_group_edges(len(axis), settings.groups)
    if np.diff(edges).min() < 2:
        raise SeqtrainError(f"eval.groups: {len(axis)} distinct timestamps are too few for {settings.groups} "
                            "groups; lower eval.groups")
    out = []
    for i, test in enumerate(cpcv_splits(settings.groups, settings.test_groups)):
        periods = cpcv_periods(edges, test, settings.val_share)
        if periods is None:
            raise SeqtrainError(f"eval.val_share: {settings.val_share} of a group of about "
                                f"{len(axis) // settings.groups} timestamps leaves no validation or no "
                                "training rows in it; choose a share nearer 0.5")
        split_cfg = OmegaConf.create(OmegaConf.to_container(cfg))
        split_cfg.eval.name = "single"
        split_cfg.data.kind, split_cfg.data.path = "parquet", data_path
        split_cfg.data.split.periods = [[_text(axis[p], zone), SPLIT_NAMES[role]] for p, role in periods]
        info = {"split": i, "test_groups": "+".join(str(g) for g in test),
                "val_start": next(_text(axis[p], zone) for p, role in periods if SPLIT_NAMES[role] == "val")}
        out.append((info, split_cfg))
    return np.append(axis[edges[:-1]], axis[-1]), out


def cpcv(cfg: DictConfig, run_dir: Path, data_path: str, train_split) -> float:
    """Train and test every split (``train_split(cfg, folder)`` runs one; with ``eval.parallel=N``
    N at a time, each in a process of its own), recombine the paths and report them; the mean of
    the splits' best monitored validation values (what a sweep optimises)."""
    started = time.perf_counter()
    group_starts, splits = split_configs(cfg, data_path)
    rows, frames, best, notes, classes = [], [], [], [], None
    trained = _train_splits(cfg, run_dir, splits, train_split)
    for (info, _), (value, metrics, predictions, wall) in zip(splits, trained, strict=True):
        best.append(value)
        notes.append(metrics.get("baseline_notes") or {})
        classes = classes or metrics.get("classes")
        frames.append(predictions.assign(split=info["split"], group=group_of(predictions["window_end"],
                                                                             group_starts)))
        rows.append(_split_row(info, metrics, wall))
    predictions = pd.concat(frames, ignore_index=True)
    zone = time_zone(source.read_schema(data_path), cfg.data.time_col)
    write_parquet(run_dir / "predictions.parquet", in_zone(predictions, zone))
    write_csv(run_dir / "splits.csv", pd.DataFrame(rows))
    paths = cpcv_paths(cfg.eval.groups, cfg.eval.test_groups)
    table = path_table(cfg.task, predictions, paths, cfg.data.group_col, cfg.data.horizon, cfg.eval.cost_bps,
                       cfg.seed, cfg.eval.get("sizing", "sign"))
    write_csv(run_dir / "paths.csv", table)
    # every split's test windows together, each split calibrated on its own validation block
    folders = [run_dir / f"split_{info['split']:02d}" for info, _ in splits]
    calibration, intervals = pooled_calibration(cfg.task, predictions, classes, folders)
    if calibration and "temperatures" in calibration:
        calibration["method"] = "temperature (each split's own)"
    monitor = cfg.early_stopping.monitor
    summary = {"eval": "cpcv", "task": cfg.task, "model": cfg.model.name, "groups": cfg.eval.groups,
               "test_groups": cfg.eval.test_groups, "splits": rows, "n_paths": len(paths),
               "group_starts": [_text(t, zone) for t in group_starts[:-1]],
               "paths": table.to_dict(orient="records"), "quantiles": path_quantiles(table),
               "walk_forward": ONE_PATH,
               # every split's test windows together (each group as often as it was tested)
               "pooled": pooled_skill(cfg.task, predictions, cfg.data.group_col, cfg.seed),
               "baseline_notes": pooled_notes(notes), "calibration": calibration, "intervals": intervals,
               "monitor": monitor, "mode": metrics["mode"], "best_val": {monitor: float(np.mean(best))},
               "windows_tested": int((predictions["step"] == 1).sum()),
               "wall_time_s": round(time.perf_counter() - started, 3), "run_dir": str(run_dir)}
    write_json(run_dir / "metrics.json", summary)
    from seqtrain.report.folds_summary import print_cpcv
    from seqtrain.report.plots import plot_paths

    if cfg.get("plots", True):
        plot_paths(table, run_dir / "plots" / "paths.png")
    print_cpcv(summary)
    return float(np.mean(best))


def _train_splits(cfg: DictConfig, run_dir: Path, splits: list[tuple[dict, DictConfig]],
                  train_split) -> list[tuple[float, dict, pd.DataFrame, float]]:
    """Each split trained, one after another or ``eval.parallel`` at a time: its best monitored
    validation value, metrics.json, test predictions and wall time."""
    notes = [f"cpcv split {info['split'] + 1}/{len(splits)}: test groups {info['test_groups']}"
             for info, _ in splits]
    folders = [run_dir / f"split_{info['split']:02d}" for info, _ in splits]
    parallel = cfg.eval.get("parallel", 1)
    if parallel > 1:
        jobs = [FoldJob(folder.name, folder, split_cfg, note)
                for folder, (_, split_cfg), note in zip(folders, splits, notes, strict=True)]
        return [(*trained_in_folder(job.folder, cfg.early_stopping.monitor), wall)
                for job, wall in zip(jobs, train_side_by_side(jobs, parallel, run_dir), strict=True)]
    out = []
    for folder, (_, split_cfg), note in zip(folders, splits, notes, strict=True):
        log.info("%s", note)
        split_started = time.perf_counter()
        trained = train_in_folder(folder, split_cfg, functools.partial(train_split, split_cfg, folder))
        out.append((*trained, time.perf_counter() - split_started))
    return out


def group_of(window_end: pd.Series, group_starts: np.ndarray) -> np.ndarray:
    """The group of each test window: the one holding its end row (its labels lie in it too)."""
    return np.searchsorted(group_starts[1:-1], window_end.to_numpy(), side="right")


def path_table(task: str, predictions: pd.DataFrame, paths: np.ndarray, group_col: str | None, horizon: int,
               cost_bps: float, seed: int = 0, sizing: str = "sign") -> pd.DataFrame:
    """One row per backtest path (``paths``: the split each path takes for each group): its
    windows, main metric, best baseline on the same windows, skill against it and, for labels
    with moves, the annualised Sharpe ratio of the trading view."""
    out = []
    for j, path in enumerate(paths):
        chosen = np.zeros(len(predictions), bool)
        for group, split in enumerate(path):
            chosen |= (predictions["split"].to_numpy() == split) & (predictions["group"].to_numpy() == group)
        frame = predictions[chosen]
        skill = pooled_skill(task, frame, group_col, seed)
        trading = trading_report(frame, group_col, horizon, cost_bps, sizing)
        out.append({"path": j, "splits": "-".join(str(int(s)) for s in path), "windows": skill["windows"],
                    skill["metric"]: skill["value"], "best_baseline": skill["best_baseline"],
                    "baseline": skill["baselines"][skill["best_baseline"]], "skill": skill["skill"],
                    "sharpe": trading["model"]["sharpe_annualised"] if trading else None})
    return pd.DataFrame(out)


def path_quantiles(table: pd.DataFrame) -> dict[str, dict[str, float] | None]:
    """The 5/25/50/75/95% quantiles over the paths of the main metric, the skill and the
    Sharpe ratio (None where no path has it)."""
    metric = next(c for c in table.columns if c.startswith("test_"))
    out = {}
    for column in (metric, "skill", "sharpe"):
        values = pd.to_numeric(table[column], errors="coerce").dropna().to_numpy()
        out[column] = ({f"q{q}": float(v) for q, v in zip(QUANTILES, np.percentile(values, QUANTILES),
                                                          strict=True)} if len(values) else None)
    return out


def _split_row(info: dict, metrics: dict, wall: float) -> dict:
    skill = metrics["skill"]
    return {**info, "windows_train": metrics["windows"]["train"], "windows_val": metrics["windows"]["val"],
            "windows_test": metrics["windows"]["test"], "best_epoch": metrics["best_epoch"],
            skill["metric"]: skill["value"], "skill": skill["skill"], **uniqueness_column(metrics),
            "wall_time_s": round(wall, 3)}
