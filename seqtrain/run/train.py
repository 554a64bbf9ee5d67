"""One training run: data -> model -> Lightning Trainer -> test -> report, into ``run_dir``."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from seqtrain.config import monitor_and_mode
from seqtrain.data import synthetic, validate
from seqtrain.data.audit import audit
from seqtrain.data.columns import in_zone, split_by_series
from seqtrain.data.datamodule import SeqDataModule
from seqtrain.data.labels import LabelSpec
from seqtrain.data.loading import load_data, parse_bytes
from seqtrain.data.weights import SampleWeightSpec
from seqtrain.engine import distributed
from seqtrain.engine.allocator import settle_malloc
from seqtrain.engine.assemble import _loss, _model_args, build_module
from seqtrain.engine.augment import Augmenter
from seqtrain.engine.calibration import (
    TEMPERATURE_RANGE,
    Calibration,
    check_settings,
    interval_report,
    labelled_probabilities,
    probability_report,
    reliability,
    softmax,
)
from seqtrain.engine.callbacks import (
    AtomicCheckpointIO,
    CollectPredictions,
    DataEpoch,
    EarlyStoppingAfterWarmup,
    EpochMetrics,
    NonFiniteGuard,
    ProgressBar,
    QuietProfiler,
    RandomState,
    RunCheckpoints,
    SaveOnInterrupt,
    Throughput,
)
from seqtrain.engine.compiling import compile_mode, compile_network, worth_compiling
from seqtrain.engine.module import SeqModule
from seqtrain.engine.optim import check_optim, check_scheduler
from seqtrain.engine.precision import PRECISIONS, resolve_precision
from seqtrain.engine.tracking import check_logger, log_config, log_results, make_logger
from seqtrain.errors import Interrupted, SeqtrainError
from seqtrain.files import remove_stale_temporaries, write_json, write_parquet
from seqtrain.models.registry import MODELS, check_model_args, model_class
from seqtrain.report.baselines import compare_with_baselines
from seqtrain.report.plots import (
    plot_calibration,
    plot_curves,
    plot_equity,
    plot_interpretation,
    plot_lr_find,
    plot_predictions,
)
from seqtrain.report.predictions import concat_records, predictions_frame
from seqtrain.report.summary import print_summary
from seqtrain.report.sweep_overfitting import check_pbo_blocks
from seqtrain.report.trading import book_returns, in_metrics, trading_report
from seqtrain.run.cpcv import check_cpcv, cpcv
from seqtrain.run.walk_forward import check_walk_forward, walk_forward

log = logging.getLogger("seqtrain")

TASKS = ("classification", "regression")


def train(cfg: DictConfig, run_dir: str | Path, resume_from: str | Path | None = None,
          quiet: bool = False, warm_from: Path | None = None) -> float:
    """Train, test and report one run (or continue one from its checkpoint ``resume_from``;
    ``quiet``: no summary table; ``warm_from``: start from that checkpoint's weights), or, with
    ``eval=walk_forward``, one run per fold (``seqtrain.run.walk_forward``), with ``eval=cpcv`` one per
    split (``seqtrain.run.cpcv``). Returns the best monitored validation value (walk-forward, cpcv:
    the folds' or splits' mean)."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    check_config(cfg)
    if distributed.global_rank() == 0:
        open_run_dir(run_dir, resumed=resume_from is not None)
    if cfg.eval.get("name", "single") == "walk_forward":
        if resume_from is not None:
            raise SeqtrainError("resume: a walk-forward run is not resumed; start it again")
        return walk_forward(cfg, run_dir, _data_path(cfg, run_dir),
                            lambda fold_cfg, folder, warm: train(fold_cfg, folder, quiet=True,
                                                                 warm_from=warm))
    if cfg.eval.get("name", "single") == "cpcv":
        if resume_from is not None:
            raise SeqtrainError("resume: a cpcv run is not resumed; start it again")
        return cpcv(cfg, run_dir, _data_path(cfg, run_dir),
                    lambda split_cfg, folder: train(split_cfg, folder, quiet=True))
    path = _data_path(cfg, run_dir)  # a built-in table is written before other DDP ranks start
    with distributed.processes(cfg, run_dir, resume_from, warm_from):
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        data = load_run_data(cfg, run_dir, path)
        module = build_module(cfg, data)
        if warm_from is not None:
            warm_start(module, warm_from)
        fitted = fit(cfg, module, data, run_dir, resume_from)
        best = best_epoch(fitted, module)
        calibration = calibrate(cfg, module, fitted, run_dir)
        tested = test(fitted, module, run_dir)
        if fitted.trainer.is_global_zero:  # DDP: one process writes the run folder
            report(cfg, data, module, fitted, best, tested, run_dir, time.perf_counter() - started, quiet,
                   calibration)
    return float(best.get(module.monitor, float("nan")))


@dataclass
class Fitted:
    """What ``fit`` leaves for testing and reporting."""

    trainer: L.Trainer
    datamodule: SeqDataModule
    epochs: EpochMetrics
    throughput: Throughput
    checkpoints: RunCheckpoints
    predictions: CollectPredictions
    checkpointing: bool
    precision: str
    leakage: dict | None
    lr_find: dict | None
    logger: object | None  # the experiment tracker (``logger=...``), or None
    compiled: str | None  # trainer.compile: what ran ("compiled (default)" or "eager (why)")


def open_run_dir(run_dir: Path, resumed: bool) -> None:
    """The run's folder: new for a new run (an earlier run's folder is never reused)."""
    if not resumed:
        _refuse_finished_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for folder in (run_dir, run_dir / "checkpoints"):  # what a killed earlier try was writing
        remove_stale_temporaries(folder)


def load_run_data(cfg: DictConfig, run_dir: Path, path: str):
    """The prepared (or planned, when streamed) data of the table at ``path``, its state saved
    as data_state.json."""
    data = load_data(cfg.data, cfg.task, path)
    if distributed.global_rank() == 0:
        data.contract.save(run_dir / "data_state.json")
    return data


def fit(cfg: DictConfig, module: SeqModule, data, run_dir: Path, resume_from: str | Path | None) -> Fitted:
    """Loaders, callbacks and Trainer; the leakage audit and (``optim.lr=find``) the learning
    rate; then training, or one line saying where to resume an interrupted run from."""
    settle_malloc()
    trainer_args = _trainer_args(cfg)
    checkpointing = trainer_args.get("enable_checkpointing", True)
    epochs = EpochMetrics(run_dir / "metrics.csv")
    throughput = Throughput()
    checkpoints = RunCheckpoints(run_dir / "checkpoints", module.monitor, module.mode)
    predictions = CollectPredictions()
    callbacks = [epochs, throughput, predictions, RandomState(), DataEpoch(),
                 NonFiniteGuard(run_dir / "checkpoints" / "last_good.ckpt"),
                 SaveOnInterrupt(run_dir / "checkpoints" / "last.ckpt")]
    if checkpointing:
        callbacks.append(checkpoints)
    if cfg.early_stopping.patience is not None:
        callbacks.append(EarlyStoppingAfterWarmup(monitor=module.monitor, mode=module.mode,
                                                  patience=cfg.early_stopping.patience,
                                                  check_on_train_epoch_end=False))
    if cfg.progress_bar:
        # redrawn 4 times a second, as rich's Live by default: a redraw costs ~1.5 ms of CPU in a
        # thread beside training's, which slowed a 2-core CPU's training ~10% at Lightning's 100
        # a second and ~2% at 10 (0.6% at 4; benchmarks/train_throughput.py, BENCHMARKS.md)
        callbacks.append(ProgressBar(leave=False, refresh_rate=4))
    logger = make_logger(cfg, run_dir, fold=_fold_number(run_dir))
    if logger is not None:
        from lightning.pytorch.callbacks import LearningRateMonitor

        callbacks.append(LearningRateMonitor(logging_interval="step"))
        trainer_args["logger"] = logger
    world = distributed.world_size(cfg)
    if world > 1:  # seqtrain shares the windows out itself (data/sharding.py)
        trainer_args["use_distributed_sampler"] = False
    trainer = _make_trainer(trainer_args, callbacks, run_dir, cfg.progress_bar)
    log_config(logger, cfg)
    datamodule = SeqDataModule(
        data, cfg.data.batch_size, cfg.data.num_workers,
        pin_memory=_pin_memory(cfg.data.pin_memory, trainer_args["accelerator"]),
        persistent_workers=cfg.data.persistent_workers, stride=cfg.data.stride,
        eval_stride=cfg.data.eval_stride, embargo=cfg.data.embargo,
        shuffle_buffer=cfg.data.shuffle_buffer, seed=cfg.seed, season=cfg.eval.season or 0,
        first_epoch=_next_epoch(resume_from) if resume_from else 0,
        rank=distributed.global_rank(), world=world,
        device=_resident_device(cfg, data, trainer.strategy.root_device),
    )
    leakage = _leakage_audit(cfg, data, datamodule) if distributed.global_rank() == 0 else None
    compiled = _compile(cfg, module, datamodule, trainer)
    lr_find = _choose_learning_rate(cfg, trainer, module, datamodule, run_dir,
                                    resumed=resume_from is not None)
    interrupted = False
    try:
        # checkpoints hold tensors and plain data only, so they load without unpickling objects
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None,
                    weights_only=True)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C or SIGTERM: last.ckpt was written first
        interrupted = True
    if interrupted or trainer.interrupted:
        raise Interrupted(
            f"interrupted at step {trainer.global_step}; {run_dir / 'checkpoints' / 'last.ckpt'} is "
            f"saved: continue with  seqtrain resume={run_dir}"
        )
    return Fitted(trainer, datamodule, epochs, throughput, checkpoints, predictions, checkpointing,
                  str(trainer_args["precision"]), leakage, lr_find, logger, compiled)


RESIDENT = ("auto", "true", "false")


def _resident_device(cfg: DictConfig, data, device: torch.device) -> torch.device | None:
    """``data.device_resident``: the device that keeps the prepared table and gathers batches
    itself, or None (DataLoaders from host memory). ``auto``: the GPU, when training on one
    and the table (in memory, not streamed) takes under half its free memory; ``true``: the
    run's ``device`` whatever it is (on the CPU: the same path without a DataLoader)."""
    setting = str(cfg.data.get("device_resident", "false")).lower()
    if setting == "false" or data.contract.record.get("streaming"):
        return None
    if setting == "true":
        return device
    if device.type != "cuda":
        return None
    needed = sum(a.nbytes for a in (data.inputs, data.labels, data.times, data.series)) * 2
    return device if needed < torch.cuda.mem_get_info(device)[0] / 2 else None


def _compile(cfg: DictConfig, module: SeqModule, datamodule: SeqDataModule, trainer: L.Trainer) -> str | None:
    """``trainer.compile``: the network compiled in place after one trial step on a training
    batch, on the run's device and under its autocast; eager, with one line, where it fails."""
    mode = compile_mode(cfg.trainer.get("compile"))
    if mode is None:
        return None
    if mode == "auto":
        why = worth_compiling(cfg.model.name, trainer.strategy.root_device.type == "cuda")
        if why:
            log.warning("trainer.compile: %s; training eager (trainer.compile=force compiles it anyway)", why)
            return f"eager ({why})"
        mode = "default"
    module.to(trainer.strategy.root_device)
    batch = datamodule.sample_batch("train", size=cfg.data.batch_size)
    batch = module.transfer_batch_to_device(batch, trainer.strategy.root_device, 0)
    return compile_network(module, batch, mode, cfg.model.name, trainer.precision_plugin.forward_context())


def warm_start(module: SeqModule, checkpoint: Path) -> None:
    """The network's weights from ``checkpoint`` (the previous walk-forward fold's best), where
    every shape matches; a fold whose inputs or classes changed starts fresh, and says so."""
    weights = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    own = module.state_dict()
    if weights.keys() != own.keys() or any(weights[k].shape != own[k].shape for k in own):
        log.warning("eval.refit=warm: the inputs or classes of this fold differ from %s's; "
                    "this fold starts from fresh weights", checkpoint.parent.parent.name)
        return
    module.load_state_dict(weights)


def best_epoch(fitted: Fitted, module: SeqModule) -> dict:
    """The metrics row of the epoch best.ckpt holds; a run stopped (max_steps) before any
    validation is validated as it stands."""
    checkpoints, trainer = fitted.checkpoints, fitted.trainer
    if checkpoints.best_epoch is not None and (row := fitted.epochs.row(checkpoints.best_epoch)):
        return row
    if fitted.checkpointing:
        trainer.save_checkpoint(checkpoints.last_path)
    trainer.validate(module, datamodule=fitted.datamodule, verbose=False)
    row = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
    last = fitted.epochs.rows[-1] if fitted.epochs.rows else None  # weights as of its end, or later
    epoch = last["epoch"] if last and last["step"] == trainer.global_step else trainer.current_epoch
    return {**row, "epoch": epoch}


def _tested_checkpoint(fitted: Fitted) -> str | None:
    """The checkpoint test reads (best.ckpt), or None: the weights as they stand."""
    best = fitted.checkpoints.best_path
    return str(best) if best and best.exists() else None


def validation_predictions(fitted: Fitted, module: SeqModule) -> list[dict]:
    """The prediction records (``SeqModule.prediction_record``) of every validation window,
    from the checkpoint test reads, through the one prediction path; under DDP every rank's
    share, on every rank. Calibration is fit on these, never on test rows."""
    trainer = fitted.trainer
    records = trainer.predict(module, dataloaders=fitted.datamodule.val_dataloader(),
                              ckpt_path=_tested_checkpoint(fitted), return_predictions=True,
                              weights_only=True) or []
    if trainer.world_size > 1:
        import torch.distributed as dist

        shares = [None] * trainer.world_size
        dist.all_gather_object(shares, records)
        records = [r for share in shares for r in share]
    return [r for r in records if len(r["y"])]


def coverage_levels(cfg: DictConfig) -> list[float]:
    """``eval.coverage`` (a run saved before the key existed: the default levels)."""
    return [float(c) for c in cfg.eval.get("coverage", [0.8, 0.95]) or []]


def calibrate(cfg: DictConfig, module: SeqModule, fitted: Fitted, run_dir: Path) -> Calibration | None:
    """``calibrate=temperature`` (classification) or conformal intervals at ``eval.coverage``
    (regression), fit on the validation windows' predictions, set on the module (its readout
    applies them from the test pass on) and saved as calibration.json; None where neither is
    asked, or without validation windows (one warning)."""
    classification = cfg.task == "classification"
    if (cfg.get("calibrate", "none") == "none") if classification else not coverage_levels(cfg):
        return None
    records = validation_predictions(fitted, module)
    what = "calibrate=temperature" if classification else "eval.coverage"
    if not records:
        log.warning("%s: no validation windows to fit on; the run is not calibrated", what)
        return None
    checkpoint = _tested_checkpoint(fitted)
    checkpoint = Path(checkpoint).name if checkpoint else None
    if classification:
        calibration = Calibration.temperature_from(concat_records(records, "logits"),
                                                   concat_records(records, "y"), checkpoint)
        if not TEMPERATURE_RANGE[0] * 1.01 < calibration.temperature < TEMPERATURE_RANGE[1] / 1.01:
            log.warning("calibrate=temperature: T=%.3g, at the end of its range: on the validation "
                        "windows the model's logits are %s", calibration.temperature,
                        "no better than chance" if calibration.temperature > 1 else "never wrong")
    else:
        truth = concat_records(records, "y").astype(np.float64) * module.target_std + module.target_mean
        quantiles = concat_records(records, "quantiles") if "quantiles" in records[0] else None
        calibration = Calibration.conformal_from(truth, concat_records(records, "pred"), quantiles,
                                                 coverage_levels(cfg), checkpoint)
        short = [n for n, margins in calibration.margins.items() if not all(map(math.isfinite, margins))]
        if short:
            log.warning("eval.coverage: %d validation windows are too few for a finite %s%% band; "
                        "its interval is unbounded (more validation windows, or a lower level)",
                        calibration.validation_windows, ", ".join(short))
    module.calibration = calibration
    if distributed.global_rank() == 0:
        calibration.save(run_dir / "calibration.json")
    return calibration


def test(fitted: Fitted, module: SeqModule, run_dir: Path) -> dict:
    """Test metrics of the best checkpoint (or of the weights as they stand, without one)."""
    try:
        return fitted.trainer.test(module, datamodule=fitted.datamodule, ckpt_path=_tested_checkpoint(fitted),
                                   verbose=False,
                                   weights_only=True)[0]
    except (KeyboardInterrupt, SystemExit):
        raise SeqtrainError(
            f"interrupted while testing; training had finished and its checkpoints are in "
            f"{run_dir / 'checkpoints'}"
        ) from None


def report(cfg: DictConfig, data, module: SeqModule, fitted: Fitted, best: dict, tested: dict,
           run_dir: Path, wall: float, quiet: bool = False, calibration: Calibration | None = None) -> dict:
    """predictions.parquet, the plots, metrics.json and the summary table."""
    _, quantiles = _loss(cfg)
    gathered = fitted.predictions
    train_rows = fitted.datamodule.last_rows("train", size=20_000)
    baseline_test, skill, baseline_columns, baseline_notes = compare_with_baselines(
        data.contract, gathered.records, train_rows, cfg.seed, cfg.eval.season or 0)
    predictions = predictions_frame(data.contract, data.series_names, gathered.records, quantiles)
    predictions = predictions.assign(**baseline_columns)  # beside the model, row by row
    write_parquet(run_dir / "predictions.parquet", in_zone(predictions, data.contract.time_zone))
    trading = trading_report(predictions, data.group_col, data.contract.window.horizon, cfg.eval.cost_bps,
                             cfg.eval.get("sizing", "sign"))
    if trading:
        write_parquet(run_dir / "trading.parquet", book_returns(trading, data.contract.time_zone))
    probabilities, intervals = _calibration_reports(cfg, data, predictions, gathered.records, calibration,
                                                    run_dir)
    epochs = fitted.epochs
    if cfg.get("plots", True):
        if trading:
            plot_equity(trading, run_dir / "plots" / "equity.png")
        if epochs.rows:
            plot_curves(epochs.rows, module.main_metric, run_dir / "plots" / "curves.png", epochs.steps)
        plot_predictions(predictions, data.group_col, cfg.task, data.classes,
                         run_dir / "plots" / "predictions.png")
        plot_interpretation(gathered.attention, gathered.importance, module.model.output_steps, data,
                            run_dir / "plots")
    speed = fitted.throughput.samples_per_second
    summary = {
        "task": cfg.task,
        "model": {"name": cfg.model.name, **module.model.summary()},
        "monitor": module.monitor,
        "mode": module.mode,  # min | max: which way the monitored value improves
        "best_epoch": int(best["epoch"]),  # 0-based, as in metrics.csv
        "best_val": {k: v for k, v in best.items() if k.startswith("val_")},
        "test": {k: float(v) for k, v in tested.items()},
        "baseline_test": baseline_test,
        "baseline_notes": baseline_notes,  # baselines left out (not known at a window's end) or filled in
        "skill": skill,
        "trading": in_metrics(trading),
        "calibration": probabilities,  # classification: Brier score, ECE (before and after calibrating)
        "intervals": intervals,  # regression: conformal bands' test coverage and width per level
        "epochs": len(epochs.rows),
        "steps": fitted.trainer.global_step,
        "windows": data.contract.record["windows"],
        "label": data.contract.to_dict()["label"],
        "classes": data.classes,
        "class_counts_by_split": data.contract.record.get("class_counts_by_split"),
        "sample_weight": data.contract.record.get("sample_weight"),  # data.sample_weight: mean uniqueness
        "wall_time_s": round(wall, 3),
        "train_samples_per_s": round(speed, 1) if math.isfinite(speed) else None,
        "threads": torch.get_num_threads(),  # torch's CPU threads (shared out under hydra/launcher=joblib)
        "malloc": settle_malloc(),  # what fit settled (cached): glibc's thresholds, or why not
        "leakage_audit": fitted.leakage,
        "lr_find": fitted.lr_find,
        "compile": fitted.compiled,  # trainer.compile: what ran, or null when not asked
        "device_resident": fitted.datamodule.device is not None,  # batches gathered on the device
        "precision": fitted.precision,  # what ran, on this device
        "precision_requested": str(cfg.trainer.precision),
        "run_dir": str(run_dir),
    }
    write_json(run_dir / "metrics.json", summary)
    log_results(fitted.logger, summary, run_dir, fitted.trainer.global_step)
    if not quiet:
        print_summary(summary)
    return summary


def _calibration_reports(cfg: DictConfig, data, predictions, records: list[dict],
                         calibration: Calibration | None, run_dir: Path) -> tuple[dict | None, dict | None]:
    """The test windows' Brier score and ECE (before and after calibrating) with
    plots/calibration.png, or the conformal bands' coverage and width."""
    if cfg.task != "classification":
        return None, interval_report(predictions, calibration)
    calibrated = calibration is not None and calibration.method == "temperature"
    before = softmax(concat_records(records, "logits")) if calibrated else None
    probabilities = probability_report(predictions, data.classes, before, calibration)
    if probabilities is None:
        return None, None
    probs, labels, rows = labelled_probabilities(predictions, data.classes)
    curves = {"before": reliability(before[rows], labels)} if calibrated else {}
    after = f"after (T={calibration.temperature:.2f})" if calibrated else "model"
    if cfg.get("plots", True):
        plot_calibration({**curves, after: reliability(probs, labels)}, run_dir / "plots" / "calibration.png")
    return probabilities, None


AUDIT_MODES = ("warn", "error", "off")


def _leakage_audit(cfg: DictConfig, data, datamodule: SeqDataModule) -> dict | None:
    """Score every input column against the label on (up to 20,000) training windows; one
    warning line, or an error with ``data.leakage_audit=error``, for those that all but decide
    it (see ``seqtrain.data.audit``)."""
    if cfg.data.leakage_audit == "off":
        return None
    batch = datamodule.last_rows("train", size=20_000)
    classification = cfg.task == "classification"
    labels = batch["y"] if classification else batch["y"][:, 0]
    # the target at the last row, which a label at t+h moves from: only a plain target with a
    # horizon (with horizon 0 the label is that row's own value; a return label is already a move)
    plain = not classification and data.contract.window.horizon >= 1 and data.contract.label == "value"
    label_now = batch["y_last"].numpy() if plain else None
    own_history = (data.target,) if data.target in data.input_names else ()
    result = audit(batch["x_last"].float().numpy(), labels.numpy(), data.input_names, cfg.task,
                   float(cfg.data.leakage_threshold), label_now, skip=own_history)
    if result["flagged"]:
        scores = ", ".join(f"{c!r} {result['scores'][c]:.3f}" for c in result["flagged"])
        message = (f"leakage audit: input column(s) {scores} ({result['statistic']} on training windows, "
                   f">= data.leakage_threshold={result['threshold']}) all but decide the label from "
                   "a window's last row: likely a label or return shifted into the table by hand; "
                   "drop them from data.features (data.leakage_audit=off if they are truly known then)")
        if cfg.data.leakage_audit == "error":
            raise SeqtrainError(message)
        log.warning(message)
    return result


def _choose_learning_rate(cfg: DictConfig, trainer: L.Trainer, module: SeqModule,
                          datamodule: SeqDataModule, run_dir: Path, resumed: bool) -> dict | None:
    """``optim.lr=find``: Lightning's learning-rate finder picks the rate before training (a
    short run of rising rates; weights, optimizer and random state are restored after it). The
    curve goes to plots/lr_find.png and the choice to lr_find.json, which a resumed run reuses."""
    if cfg.optim.lr != "find":
        return None
    record = run_dir / "lr_find.json"
    if resumed and record.exists():
        found = json.loads(record.read_text())
        module.lr = found["lr"]
        return found
    from lightning.pytorch.tuner import Tuner

    module.lr = 1e-3  # a placeholder: the finder sweeps the rate itself
    # the finder's 100 steps, however few epochs the run has
    epochs, trainer.fit_loop.max_epochs = trainer.fit_loop.max_epochs, 10**6
    quiet = contextlib.nullcontext() if cfg.progress_bar else contextlib.redirect_stderr(io.StringIO())
    try:
        with quiet:  # the finder draws a bar of its own
            finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False)
    finally:
        trainer.fit_loop.max_epochs = epochs
    chosen = finder.suggestion() if finder is not None else None
    if chosen is None or not math.isfinite(chosen):
        raise SeqtrainError("optim.lr=find: the learning-rate finder found no rate (the loss never "
                            "fell); set optim.lr to a number")
    module.lr = chosen
    found = {"lr": float(chosen), "tried": len(finder.results["lr"])}
    if cfg.get("plots", True):
        plot_lr_find(finder.results["lr"], finder.results["loss"], chosen, run_dir / "plots" / "lr_find.png")
    write_json(record, found)
    log.info("optim.lr=find: learning rate %.3g (curve in plots/lr_find.png)", chosen)
    return found


def _next_epoch(checkpoint: str | Path) -> int:
    """The epoch a run resumed from ``checkpoint`` trains first (as Lightning counts it)."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)  # no weights read
    return int(saved["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])


def check_config(cfg: DictConfig) -> None:
    """Every setting that can be judged without the data, before any data is read: a typo
    costs a second, not a table load."""
    if cfg.task not in TASKS:
        raise SeqtrainError(f"task: unknown task {cfg.task!r}; choose one of {', '.join(TASKS)}")
    for key in ("plots", "progress_bar"):
        if not isinstance(cfg.get(key, True), bool):
            raise SeqtrainError(f"{key}: {cfg.get(key)!r}; true or false")
    monitor_and_mode(cfg)
    patience = cfg.early_stopping.patience
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 0):
        raise SeqtrainError(
            f"early_stopping.patience: {patience!r}; an integer >= 0, or null never to stop early")
    _loss(cfg)
    if cfg.eval.get("name", "single") == "walk_forward":
        check_walk_forward(cfg.eval)
    elif cfg.eval.get("name", "single") == "cpcv":
        check_cpcv(cfg.eval)
    elif cfg.eval.get("name", "single") != "single":
        raise SeqtrainError(f"eval.name: {cfg.eval.name!r}; choose eval=default, eval=walk_forward "
                            "or eval=cpcv")
    label = LabelSpec.from_config(cfg.data, cfg.task)  # data.label, target_kind, dead_zone, barrier
    SampleWeightSpec.from_config(cfg.data)  # data.sample_weight, sample_weight_decay
    up_and_down = label.kind == "direction" or (label.kind == "triple_barrier" and label.barrier.side is None)
    check_settings(cfg.task, cfg.get("calibrate", "none"), cfg.eval.get("coverage", [0.8, 0.95]),
                   cfg.eval.get("sizing", "sign"), up_and_down)
    cost = cfg.eval.get("cost_bps", 0.0)
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0:
        raise SeqtrainError(f"eval.cost_bps: {cost!r}; a cost in basis points >= 0")
    check_pbo_blocks(cfg.eval.get("pbo_blocks", 16))
    season = cfg.eval.season
    if season is not None and (isinstance(season, bool) or not isinstance(season, int) or season < 1):
        raise SeqtrainError(f"eval.season: {season!r}; a period in rows >= 1 (e.g. 24 for hourly data), "
                            "or null")
    if cfg.get("instance_norm", "none") not in ("auto", "revin", "none"):
        raise SeqtrainError(f"instance_norm: {cfg.instance_norm!r}; choose auto, revin or none")
    model = check_model_args(cfg.model.name, _model_args(cfg))
    if cfg.data.known_future and not model.reads_future:
        readers = ", ".join(name for name in MODELS if model_class(name).reads_future)
        log.warning("data.known_future: model=%s reads no values beyond a window's end, so %s are "
                    "ordinary inputs up to it; the models that read them at the label rows: %s",
                    cfg.model.name, ", ".join(cfg.data.known_future), readers)
    if cfg.data.pad_short and not model.respects_mask:
        raise SeqtrainError(f"data.pad_short: model={cfg.model.name} does not honour the padding mask; "
                            "set data.pad_short=false or choose another model")
    check_optim(OmegaConf.to_container(cfg.optim, resolve=True))
    if cfg.optim.lr == "find" and distributed.world_size(cfg) > 1:
        raise SeqtrainError("optim.lr=find: the learning-rate finder runs in one process; find the rate "
                            "with trainer.devices=1 (it is saved in lr_find.json) and set optim.lr to it")
    check_scheduler(OmegaConf.to_container(cfg.scheduler, resolve=True))
    Augmenter(OmegaConf.to_container(cfg.augment, resolve=True))
    check_logger(cfg)
    _check_trainer_keys(cfg)
    compile_mode(cfg.trainer.get("compile"))
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise SeqtrainError(
            "trainer.accelerator: gpu requested but no CUDA GPU is visible; use trainer=default (CPU)")
    if str(cfg.trainer.precision) not in PRECISIONS:
        raise SeqtrainError(f"trainer.precision: {cfg.trainer.precision!r}; choose one of "
                            f"{', '.join(PRECISIONS)}")
    data = cfg.data
    if data.kind not in ("parquet", "synthetic"):
        raise SeqtrainError(f"data.kind: unknown {data.kind!r}; choose parquet or synthetic")
    validate.check_window_settings(data)
    if str(data.streaming).lower() not in ("auto", "true", "false"):
        raise SeqtrainError(f"data.streaming: {data.streaming!r}; choose auto, true or false")
    if str(data.get("device_resident", "false")).lower() not in RESIDENT:
        raise SeqtrainError(f"data.device_resident: {data.device_resident!r}; choose auto, true or false")
    parse_bytes(data.memory_budget)
    split_by_series(data)
    if data.leakage_audit not in AUDIT_MODES:
        raise SeqtrainError(
            f"data.leakage_audit: {data.leakage_audit!r}; choose one of {', '.join(AUDIT_MODES)}")
    if not isinstance(data.leakage_threshold, (int, float)) or not 0.5 < data.leakage_threshold <= 1:
        raise SeqtrainError(f"data.leakage_threshold: {data.leakage_threshold!r}; choose a value in (0.5, 1]")
    if cfg.task == "classification" and data.output_steps != 1:
        raise SeqtrainError("data.output_steps: multi-step output is for task=regression; set it to 1")


def _check_trainer_keys(cfg: DictConfig) -> None:
    """Keys of the trainer group are Lightning Trainer arguments: refuse any other."""
    accepted = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", "callbacks"} | {"compile"}
    unknown = sorted(set(cfg.trainer) - accepted)
    if unknown:
        raise SeqtrainError(f"trainer.{unknown[0]}: not an argument of lightning's Trainer "
                            "(keys of the trainer group go to it unchanged)")


def _fold_number(run_dir: Path) -> int | None:
    """The walk-forward fold a run folder holds (``fold_03`` -> 3), else None."""
    name = run_dir.name
    return int(name[5:]) if name.startswith("fold_") and name[5:].isdigit() else None


def _data_path(cfg: DictConfig, run_dir: Path) -> str:
    data = cfg.data
    if data.kind == "synthetic":
        if data.target is None:
            data.target = "direction" if cfg.task == "classification" else "y"
        if data.path is None:
            data.path = str(run_dir / "data" / "synthetic.parquet")
        table = Path(data.path).expanduser()
        if distributed.global_rank() == 0:  # other DDP ranks read the table rank 0 wrote
            if table.exists() and not table.resolve().is_relative_to(run_dir.resolve()):
                # most likely the user's own table, named without data=parquet: never replace it
                raise SeqtrainError(f"data.path: {data.path} exists, and data=synthetic would replace "
                                    "it with the demo table; to train on it add data=parquet, or name a new "
                                    "file")
            synthetic.write_parquet(str(table), **OmegaConf.to_container(data.generator, resolve=True))
        elif not table.exists():
            synthetic.write_parquet(str(table), **OmegaConf.to_container(data.generator, resolve=True))
    elif data.kind != "parquet":
        raise SeqtrainError(f"data.kind: unknown {data.kind!r}; choose parquet or synthetic")
    return str(Path(data.path).expanduser())


def _refuse_finished_run(run_dir: Path) -> None:
    if (run_dir / "metrics.json").exists() or (run_dir / "checkpoints").exists():
        raise SeqtrainError(
            f"hydra.run.dir: {run_dir} already holds a run; choose a new folder so it is not overwritten"
        )


def _trainer_args(cfg: DictConfig) -> dict:
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    args.pop("compile", None)  # seqtrain's own key (compiling.py), not Lightning's
    accelerator = args.get("accelerator", "auto")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise SeqtrainError(
            "trainer.accelerator: gpu requested but no CUDA GPU is visible; use trainer=default (CPU)"
        )
    precision, note = resolve_precision(args.get("precision", "32"), on_gpu)
    if note:
        log.warning(note)
    args["precision"] = precision
    args["accelerator"] = "gpu" if on_gpu else "cpu"
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return args


def _make_trainer(args: dict, callbacks: list, run_dir: Path, progress_bar: bool) -> L.Trainer:
    args = dict(args)
    args.setdefault("logger", False)
    args["plugins"] = [*(args.get("plugins") or []), AtomicCheckpointIO()]
    if args.get("profiler") is None:
        args["profiler"] = QuietProfiler()
    args.setdefault("enable_progress_bar", bool(progress_bar))
    try:
        return L.Trainer(callbacks=callbacks, default_root_dir=str(run_dir), **args)
    except TypeError as exc:
        raise SeqtrainError(f"trainer: {exc} (keys of the trainer group go to lightning's Trainer)") from None
    except (ValueError, RuntimeError) as exc:  # lightning's MisconfigurationException is a ValueError
        raise SeqtrainError(f"trainer: {str(exc).splitlines()[0]}") from None


def _pin_memory(setting, accelerator: str) -> bool:
    if setting == "auto":
        return accelerator == "gpu"
    return bool(setting)
