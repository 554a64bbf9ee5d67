"""Walk-forward evaluation (``eval=walk_forward``) around the training run's steps.

Test blocks move forward in time over the distinct timestamps of the table (``windows.
walk_forward_folds``). Each fold is a whole training run in ``RUN/fold_NN/``: a fresh model,
statistics fit on that fold's training rows only, validation on the block before its test block,
rows after its test block left out, purge and ``data.embargo`` at every boundary. The folds'
test predictions together cover the evaluated period once; the run folder gets them pooled
(``predictions.parquet`` with a ``fold`` column), ``folds.csv``, ``metrics.json`` (per fold and
pooled, with baselines, the 95% interval and the skill) and ``plots/folds.png``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from seqtrain.data import source
from seqtrain.data.columns import in_zone, time_values, time_zone, utc_times
from seqtrain.data.splits import walk_forward_folds
from seqtrain.engine.calibration import Calibration, interval_report, probability_report
from seqtrain.errors import SeqtrainError
from seqtrain.files import write_csv, write_json, write_parquet
from seqtrain.report.baselines import pooled_skill
from seqtrain.report.overfitting import deflated_report
from seqtrain.report.trading import book_returns, in_metrics, trading_report
from seqtrain.run.folders import start_run_folder
from seqtrain.run.parallel import FoldJob, train_side_by_side

log = logging.getLogger("seqtrain")

SCHEMES = ("expanding", "sliding")
REFITS = ("fresh", "warm")


def check_walk_forward(settings) -> None:
    """The ``eval`` keys of a walk-forward run, before any data is read."""
    folds = settings.folds
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise SeqtrainError(f"eval.folds: {folds!r}; an integer >= 1")
    if settings.scheme not in SCHEMES:
        raise SeqtrainError(f"eval.scheme: {settings.scheme!r}; choose expanding or sliding")
    if settings.get("refit", "fresh") not in REFITS:
        raise SeqtrainError(f"eval.refit: {settings.refit!r}; choose fresh (a new model per fold) or "
                            "warm (start from the previous fold's best weights)")
    for key in ("test_size", "val_size", "train_size"):
        value = settings.get(key)
        if value is None and key != "test_size":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise SeqtrainError(f"eval.{key}: {value!r}; a share of the timestamps in (0, 1)")
    trials = settings.get("trials", 1)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SeqtrainError(f"eval.trials: {trials!r}; an integer >= 1, the configurations tried in all "
                            "(this one included) for the deflated Sharpe ratio")
    variance = settings.get("trial_sharpe_variance")
    if variance is not None and (isinstance(variance, bool) or not isinstance(variance, (int, float))
                                 or not variance >= 0):
        raise SeqtrainError(f"eval.trial_sharpe_variance: {variance!r}; the variance of the trials' "
                            "per-period Sharpe ratios (>= 0), or null to use the estimator's")
    if settings.scheme == "sliding" and settings.get("train_size") is None:
        raise SeqtrainError("eval.scheme=sliding: set eval.train_size, the share each fold trains on")


def fold_configs(cfg: DictConfig, data_path: str) -> list[tuple[dict, DictConfig]]:
    """Each fold's boundaries (as times) and the config of its run: this run's config with the
    fold's split and period, evaluated as a single split."""
    settings = cfg.eval
    if cfg.data.split.get("by", "time") != "time":
        raise SeqtrainError("eval=walk_forward: folds cut one time axis; set data.split.by=time")
    table = source.read_columns(data_path, [cfg.data.time_col])
    axis = np.unique(time_values(table.column(cfg.data.time_col), cfg.data.time_col))
    zone = time_zone(table.schema, cfg.data.time_col)
    folds = walk_forward_folds(len(axis), settings.folds, settings.test_size,
                               settings.val_size or settings.test_size, settings.scheme, settings.train_size)
    if not folds:
        raise SeqtrainError(
            f"eval: {len(axis)} distinct timestamps are too few for {settings.folds} folds of test_size "
            f"{settings.test_size} with a validation block and training rows before each; lower eval.folds "
            "or eval.test_size")
    out = []
    for fold in folds:
        bounds = {"train_start": _text(axis[fold.train_start], zone) if fold.train_start else None,
                  "val_start": _text(axis[fold.val_start], zone),
                  "test_start": _text(axis[fold.test_start], zone),
                  "test_end": _text(axis[fold.test_end], zone) if fold.test_end is not None else None}
        fold_cfg = OmegaConf.create(OmegaConf.to_container(cfg))
        fold_cfg.eval.name = "single"
        fold_cfg.data.kind, fold_cfg.data.path = "parquet", data_path
        for key, value in bounds.items():
            fold_cfg.data.split[key] = value
        out.append((bounds, fold_cfg))
    return out


def _text(value, zone: str | None = None) -> str | float | int:
    """A boundary as a config value: a UTC instant in the table's ``zone``, with its offset."""
    if isinstance(value, np.datetime64):
        stamp = pd.Timestamp(value)
        return (stamp.tz_localize("UTC").tz_convert(zone) if zone else stamp).isoformat()
    return value.item() if hasattr(value, "item") else value


def walk_forward(cfg: DictConfig, run_dir: Path, data_path: str, train_fold) -> float:
    """Train and test every fold (``train_fold(cfg, folder, warm_from)`` runs one, from the
    previous fold's best checkpoint with ``eval.refit=warm``; with ``eval.parallel=N`` N folds at
    a time, each in a process of its own), then pool; the mean of the folds' best monitored
    validation values (what a sweep optimises)."""
    started = time.perf_counter()
    rows, frames, best, classes, notes = [], [], [], None, []
    refit = cfg.eval.get("refit", "fresh")
    folds = fold_configs(cfg, data_path)
    for i, (value, metrics, tested, wall, warm) in enumerate(_train_folds(cfg, run_dir, folds, train_fold)):
        best.append(value)
        classes = classes or metrics.get("classes")
        notes.append(metrics.get("baseline_notes") or {})
        frames.append(tested.assign(fold=i))
        rows.append({**_fold_row(i, folds[i][0], metrics, wall),
                     "warm_from": warm.parent.parent.name if warm else None})
    predictions = pd.concat(frames, ignore_index=True)
    zone = time_zone(source.read_schema(data_path), cfg.data.time_col)
    write_parquet(run_dir / "predictions.parquet", in_zone(predictions, zone))
    folds_table = pd.DataFrame(rows)
    write_csv(run_dir / "folds.csv", folds_table)
    task = cfg.task
    pooled = pooled_skill(task, predictions, cfg.data.group_col, cfg.seed)
    trading = trading_report(predictions, cfg.data.group_col, cfg.data.horizon, cfg.eval.cost_bps,
                             cfg.eval.get("sizing", "sign"))
    if trading:  # the pooled book: its periods, and its Sharpe deflated by the trials run elsewhere
        write_parquet(run_dir / "trading.parquet", book_returns(trading, zone))
        trading["deflated_sharpe"] = deflated_report(trading["model"], cfg.eval.get("trials", 1),
                                                     cfg.eval.get("trial_sharpe_variance"))
    calibration, intervals = pooled_calibration(task, predictions, classes,
                                                [run_dir / f"fold_{i:02d}" for i in range(len(folds))])
    monitor = cfg.early_stopping.monitor
    summary = {"eval": "walk_forward", "task": task, "model": cfg.model.name,
               "scheme": cfg.eval.scheme, "refit": refit, "folds": rows, "pooled": pooled,
               "baseline_notes": pooled_notes(notes),  # baselines a fold left out or filled in
               # what a sweep ranks: the folds' mean best validation value
               "monitor": monitor, "mode": metrics["mode"], "best_val": {monitor: float(np.mean(best))},
               "trading": in_metrics(trading),
               "calibration": calibration, "intervals": intervals,
               "windows_tested": int((predictions["step"] == 1).sum()),
               "wall_time_s": round(time.perf_counter() - started, 3), "run_dir": str(run_dir)}
    write_json(run_dir / "metrics.json", summary)
    from seqtrain.report.folds_summary import print_walk_forward

    if cfg.get("plots", True):
        _plot(cfg, folds_table, pooled, predictions, classes, trading, run_dir / "plots")
    print_walk_forward(summary)
    return float(np.mean(best))


def _plot(cfg: DictConfig, folds_table: pd.DataFrame, pooled: dict, predictions: pd.DataFrame,
          classes: list | None, trading: dict | None, folder: Path) -> None:
    """Each fold's skill, the pooled predictions with the folds' test starts marked, the book."""
    from seqtrain.report.plots import plot_equity, plot_folds, plot_predictions

    plot_folds(folds_table, pooled, folder / "folds.png")
    starts = [pd.Timestamp(b) if isinstance(b, str) else b for b in folds_table["test_start"]]
    plot_predictions(predictions, cfg.data.group_col, cfg.task, classes, folder / "predictions.png",
                     boundaries=starts)
    if trading:
        plot_equity(trading, folder / "equity.png")


def _train_folds(cfg: DictConfig, run_dir: Path, folds: list[tuple[dict, DictConfig]],
                 train_fold) -> list[tuple[float, dict, pd.DataFrame, float, Path | None]]:
    """Each fold trained, one after another or ``eval.parallel`` at a time: its best monitored
    validation value, metrics.json, test predictions, wall time and the checkpoint it started from."""
    notes = [f"walk-forward fold {i + 1}/{len(folds)}: test {b['test_start']} .. {b['test_end'] or 'end'}"
             for i, (b, _) in enumerate(folds)]
    parallel = cfg.eval.get("parallel", 1)
    if parallel > 1:
        jobs = [FoldJob(f"fold_{i:02d}", run_dir / f"fold_{i:02d}", fold_cfg, note)
                for i, ((_, fold_cfg), note) in enumerate(zip(folds, notes, strict=True))]
        return [(*trained_in_folder(job.folder, cfg.early_stopping.monitor), wall, None)
                for job, wall in zip(jobs, train_side_by_side(jobs, parallel, run_dir), strict=True)]
    out, refit = [], cfg.eval.get("refit", "fresh")
    for i, (_, fold_cfg) in enumerate(folds):
        folder = run_dir / f"fold_{i:02d}"
        log.info("%s", notes[i])
        fold_started = time.perf_counter()
        warm = run_dir / f"fold_{i - 1:02d}" / "checkpoints" / "best.ckpt"
        warm = warm if refit == "warm" and i > 0 and warm.exists() else None
        train_one = functools.partial(train_fold, fold_cfg, folder, warm)
        out.append((*train_in_folder(folder, fold_cfg, train_one), time.perf_counter() - fold_started, warm))
    return out


def train_in_folder(folder: Path, run_cfg: DictConfig, train_one) -> tuple[float, dict, pd.DataFrame]:
    """One fold or split trained (``train_one()``) as a run folder of its own; its best monitored
    validation value, its metrics.json and its test predictions (times in UTC)."""
    start_run_folder(folder, run_cfg)
    best = train_one()
    metrics = json.loads((folder / "metrics.json").read_text())
    return best, metrics, utc_times(pd.read_parquet(folder / "predictions.parquet"))


def trained_in_folder(folder: Path, monitor: str) -> tuple[float, dict, pd.DataFrame]:
    """What ``train_in_folder`` returns, for a fold or split trained in a process of its own
    (``seqtrain.run.parallel``): its best monitored value as its metrics.json holds it."""
    metrics = json.loads((folder / "metrics.json").read_text())
    best = float(metrics["best_val"].get(monitor, float("nan")))
    return best, metrics, utc_times(pd.read_parquet(folder / "predictions.parquet"))


def pooled_calibration(task: str, predictions: pd.DataFrame, classes: list | None,
                       folders: list[Path]) -> tuple[dict | None, dict | None]:
    """Brier score and ECE, or the conformal bands' coverage and width, over every fold's test
    windows together; each fold calibrated on its own validation block (its calibration.json)."""
    saved = [Calibration.load(folder / "calibration.json") for folder in folders]
    fitted = [c for c in saved if c is not None]
    if task == "classification":
        report = probability_report(predictions, classes or [])
        if report and fitted and len(fitted) == len(saved):
            report.update(method="temperature (each fold's own)",
                          temperatures=[c.temperature for c in fitted])
        return report, None
    if not fitted or len(fitted) != len(saved):
        return None, None
    report = interval_report(predictions, fitted[0])
    if report:
        report["validation_windows"] = [c.validation_windows for c in fitted]  # each fold's own block
    return None, report


def _fold_row(i: int, bounds: dict, metrics: dict, wall: float) -> dict:
    skill = metrics["skill"]
    low, high = skill["interval"]
    return {"fold": i, **bounds, "windows_train": metrics["windows"]["train"],
            "windows_val": metrics["windows"]["val"], "windows_test": metrics["windows"]["test"],
            "best_epoch": metrics["best_epoch"], skill["metric"]: skill["value"], "interval_low": low,
            "interval_high": high, **{f"baseline_{k}": v for k, v in skill["baselines"].items()},
            "skill": skill["skill"], "beats_best_baseline": skill["beats_best_baseline"],
            **uniqueness_column(metrics), "wall_time_s": round(wall, 3)}


def uniqueness_column(metrics: dict) -> dict:
    """``data.sample_weight``'s mean average uniqueness of a fold's (or split's) training windows,
    as a column of its row; nothing without weights."""
    weight = metrics.get("sample_weight")
    return {"mean_uniqueness": weight["mean_uniqueness"]} if weight else {}


def pooled_notes(notes: list[dict]) -> dict[str, str]:
    """Each baseline's notes over the folds (``notes``: each fold's ``baseline_notes``): one
    note where every fold says the same, else each fold's own, by fold."""
    out = {}
    for name in dict.fromkeys(k for fold in notes for k in fold):
        said = {i: fold[name] for i, fold in enumerate(notes) if name in fold}
        texts = set(said.values())
        out[name] = (texts.pop() if len(said) == len(notes) and len(texts) == 1
                     else "; ".join(f"fold {i}: {text}" for i, text in said.items()))
    return out
