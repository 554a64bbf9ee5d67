"""The report of one training run, into its folder: the test predictions beside the baselines'
(``predictions.parquet``), the trading view's book (``trading.parquet``), the plots, and
``metrics.json``, the summary every other reader (the table, sweeps, folds, trackers) starts
from. It formats what the run produced (duck-typed: the fit's records, the module) and
imports nothing of the machinery that produced it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from seqtrain.data.columns import in_zone
from seqtrain.files import write_json, write_parquet
from seqtrain.report.baselines import compare_with_baselines
from seqtrain.report.cases import case_frame, class_report, compare_cases
from seqtrain.report.plots import (
    plot_confusion,
    plot_curves,
    plot_equity,
    plot_interpretation,
    plot_predictions,
)
from seqtrain.report.predictions import predictions_frame
from seqtrain.report.trading import book_returns, in_metrics, trading_report


@dataclass
class TestPredictions:
    """The test windows' predictions as written, with what the baselines and the trading view
    made of them."""

    frame: pd.DataFrame
    trading: dict | None
    baseline_test: dict
    skill: dict
    baseline_notes: dict


def write_predictions(cfg: DictConfig, data, fitted, quantiles, run_dir: Path) -> TestPredictions:
    """predictions.parquet: the model's test predictions (``fitted.predictions``; ``quantiles``:
    the loss's, or None) beside the baselines', row by row; and trading.parquet, the book of a
    label with moves."""
    gathered, datamodule = fitted.predictions, fitted.datamodule
    if data.state.cases:  # whole cases: the majority class and 1-NN, cases drawn one at a time
        baseline_test, skill, baseline_columns, baseline_notes = compare_cases(
            data.state, gathered.records, datamodule.whole_windows("train"), datamodule.whole_windows("test"),
            cfg.seed)
    else:
        baseline_test, skill, baseline_columns, baseline_notes = compare_with_baselines(
            data.state, gathered.records, datamodule.last_rows("train", size=20_000), cfg.seed,
            cfg.eval.season or 0)
    predictions = predictions_frame(data.state, data.series_names, gathered.records, quantiles)
    predictions = predictions.assign(**baseline_columns)  # beside the model, row by row
    if data.state.cases:
        predictions = case_frame(predictions)
    write_parquet(run_dir / "predictions.parquet", in_zone(predictions, data.state.time_zone))
    trading = trading_report(predictions, data.group_col, data.state.window.horizon, cfg.eval.cost_bps,
                             cfg.eval.get("sizing", "sign"))
    if trading:
        write_parquet(run_dir / "trading.parquet", book_returns(trading, data.state.time_zone))
    return TestPredictions(predictions, trading, baseline_test, skill, baseline_notes)


def write_run_report(cfg: DictConfig, data, module, fitted, best: dict, tested: dict,
                     written: TestPredictions, probabilities: dict | None, intervals: dict | None,
                     run_dir: Path, wall: float, malloc: str) -> dict:
    """The plots and metrics.json (``probabilities``: the calibration report of a classifier,
    ``intervals``: the conformal bands' of a regression; ``malloc``: what the fit settled);
    returns the summary metrics.json holds."""
    if cfg.get("plots", True):
        _plot(cfg, data, module, fitted, written, run_dir / "plots")
    epochs, trading, speed = fitted.epochs, written.trading, fitted.throughput.samples_per_second
    summary = {
        "task": cfg.task,
        "model": {"name": cfg.model.name, **module.model.summary()},
        "monitor": module.monitor,
        "mode": module.mode,  # min | max: which way the monitored value improves
        "best_epoch": int(best["epoch"]),  # 0-based, as in metrics.csv
        # hparams_search.pruner stopped this trial: its rule, epoch, last and best value, the others' mark
        **({"pruned": fitted.pruned} if getattr(fitted, "pruned", None) else {}),
        "best_val": {k: v for k, v in best.items() if k.startswith("val_")},
        "test": {k: float(v) for k, v in tested.items()},
        "baseline_test": written.baseline_test,
        # baselines left out (not known at a window's end) or filled in
        "baseline_notes": written.baseline_notes,
        "skill": written.skill,
        "trading": in_metrics(trading),
        "calibration": probabilities,  # classification: Brier score, ECE (before and after calibrating)
        "intervals": intervals,  # regression: conformal bands' test coverage and width per level
        "epochs": len(epochs.rows),
        "steps": fitted.trainer.global_step,
        "windows": data.state.fit_summary["windows"],
        **({"cases": data.state.cases, "per_class": _per_class(data, written)} if data.state.cases else {}),
        "label": data.state.to_dict()["label"],
        "classes": data.classes,
        "class_counts_by_split": data.state.fit_summary.get("class_counts_by_split"),
        "sample_weight": data.state.fit_summary.get("sample_weight"),  # mean uniqueness
        "wall_time_s": round(wall, 3),
        "train_samples_per_s": round(speed, 1) if math.isfinite(speed) else None,
        "threads": torch.get_num_threads(),  # torch's CPU threads (shared out under hydra/launcher=joblib)
        "malloc": malloc,  # glibc's thresholds, or why not
        "leakage_audit": fitted.leakage,
        "lr_find": fitted.lr_find,
        "compile": fitted.compiled,  # trainer.compile: what ran, or null when not asked
        "device_resident": fitted.datamodule.device is not None,  # batches gathered on the device
        "precision": fitted.precision,  # what ran, on this device
        "precision_requested": str(cfg.trainer.precision),
        "run_dir": str(run_dir),
    }
    write_json(run_dir / "metrics.json", summary)
    return summary


def _plot(cfg: DictConfig, data, module, fitted, written: TestPredictions, folder: Path) -> None:
    """The book's equity, the training curves, the predictions and what the model attended to."""
    epochs, predictions = fitted.epochs, written.frame
    if data.state.cases:  # one row per case: no time axis to plot along
        plot_confusion(predictions["y_true"].to_numpy(), predictions["y_pred"].to_numpy(), data.classes,
                       folder / "confusion.png")
    elif written.trading:
        plot_equity(written.trading, folder / "equity.png")
    if epochs.rows:
        plot_curves(epochs.rows, module.main_metric, folder / "curves.png", epochs.steps)
    if not data.state.cases:
        plot_predictions(predictions, data.group_col, cfg.task, data.classes, folder / "predictions.png")
    gathered = fitted.predictions
    plot_interpretation(gathered.attention, gathered.importance, module.model.output_steps, data, folder)


def _per_class(data, written: TestPredictions) -> dict:
    """A case run's test figures per class (``cases.class_report``), by class name."""
    frame, classes = written.frame, list(data.classes)
    index = pd.Index(classes)
    probs = frame[[f"prob_{c}" for c in classes]].to_numpy()
    return class_report(index.get_indexer(frame["y_true"]), index.get_indexer(frame["y_pred"]), probs,
                        len(classes), classes)
