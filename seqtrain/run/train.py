"""One training run, as its named steps: check -> data -> model -> fit -> test -> report, into
``run_dir`` (the settings are judged in ``seqtrain.run.checks``, the Trainer is wired in
``seqtrain.engine.trainer``, the report formatted by ``seqtrain.report.run``)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import time
from pathlib import Path

import lightning.pytorch as L
import numpy as np
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from seqtrain.data import synthetic
from seqtrain.data.audit import leakage_audit
from seqtrain.data.datamodule import SeqDataModule
from seqtrain.data.loading import load_data
from seqtrain.engine import distributed
from seqtrain.engine.allocator import settle_malloc
from seqtrain.engine.assemble import build_module, series_embedding
from seqtrain.engine.calibration import (
    TEMPERATURE_RANGE,
    Calibration,
    interval_report,
    labelled_probabilities,
    probability_report,
    reliability,
    softmax,
)
from seqtrain.engine.callbacks import KeepPredictions
from seqtrain.engine.module import SeqModule
from seqtrain.engine.pruning import PruneRule
from seqtrain.engine.tracking import log_config, log_results, make_logger
from seqtrain.engine.trainer import (
    Fitted,
    compile_module,
    make_trainer,
    next_epoch,
    pin_memory,
    resident_device,
    run_callbacks,
    trainer_args,
    warm_start,
)
from seqtrain.errors import Interrupted, SeqtrainError
from seqtrain.files import remove_stale_temporaries, write_json
from seqtrain.report.baselines import dlinear_recorder
from seqtrain.report.plots import plot_calibration, plot_lr_find
from seqtrain.report.predictions import concat_records
from seqtrain.report.run import write_predictions, write_run_report
from seqtrain.report.summary import print_summary
from seqtrain.run.checks import check_config
from seqtrain.run.cpcv import cpcv
from seqtrain.run.walk_forward import walk_forward

log = logging.getLogger("seqtrain")


def train(cfg: DictConfig, run_dir: str | Path, resume_from: str | Path | None = None,
          quiet: bool = False, warm_from: Path | None = None, pruning: PruneRule | None = None) -> float:
    """Train, test and report one run (or continue one from its checkpoint ``resume_from``;
    ``quiet``: no summary table; ``warm_from``: start from that checkpoint's weights; ``pruning``:
    a sweep trial's rule, which may stop it early), or, with
    ``eval=walk_forward``, one run per fold (``seqtrain.run.walk_forward``), with ``eval=cpcv`` one per
    split (``seqtrain.run.cpcv``). Returns the best monitored validation value (walk-forward, cpcv:
    the folds' or splits' mean)."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    check_config(cfg)
    if distributed.global_rank() == 0:
        open_run_dir(run_dir, resumed=resume_from is not None)
    scheme = cfg.eval.get("name", "single")
    if resume_from is not None and scheme != "single":
        raise SeqtrainError(f"resume: a {scheme.replace('_', '-')} run is not resumed; start it again")
    cfg = write_demo_table(cfg, run_dir)  # a built-in table is written before other DDP ranks start
    path = table_path(cfg)
    if scheme == "walk_forward":
        return walk_forward(cfg, run_dir, path,
                            lambda fold, folder, warm: train(fold, folder, quiet=True, warm_from=warm))
    if scheme == "cpcv":
        return cpcv(cfg, run_dir, path, lambda split, folder: train(split, folder, quiet=True))
    with distributed.processes(cfg, run_dir, resume_from, warm_from, pruning.to_dict() if pruning else None):
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        data = load_run_data(cfg, run_dir, path)
        module = build_module(cfg, data)
        if warm_from is not None:
            warm_start(module, warm_from)
        fitted = fit(cfg, module, data, run_dir, resume_from, pruning)
        best = best_metrics(fitted, module)
        calibration = calibrate(cfg, module, fitted, run_dir)
        if data.state.task == "regression":  # DLinear, fit on training windows, forecasts each test window
            module.history_baselines = dlinear_recorder(fitted.datamodule.last_rows("train", size=20_000))
        tested = test(fitted, module, run_dir)
        if fitted.trainer.is_global_zero:  # DDP: one process writes the run folder
            report(cfg, data, module, fitted, best, tested, run_dir, time.perf_counter() - started, quiet,
                   calibration)
    return float(best.get(module.monitor, float("nan")))


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
    data = load_data(cfg.data, cfg.task, path, series_embedding(cfg) > 0)
    if distributed.global_rank() == 0:
        data.state.save(run_dir / "data_state.json")
    return data


def fit(cfg: DictConfig, module: SeqModule, data, run_dir: Path, resume_from: str | Path | None,
        pruning: PruneRule | None = None) -> Fitted:
    """Callbacks, Trainer and loaders; the leakage audit and (``optim.lr=find``) the learning
    rate; then training (a sweep's trial pruned by ``pruning``), or one line saying where to
    resume an interrupted run from."""
    settle_malloc()
    args = trainer_args(cfg)
    checkpointing = args.get("enable_checkpointing", True)
    logger = make_logger(cfg, run_dir, fold=_fold_number(run_dir))
    recorders, callbacks = run_callbacks(cfg, module, run_dir, checkpointing, tracked=logger is not None,
                                         pruning=pruning)
    if logger is not None:
        args["logger"] = logger
    world = distributed.world_size(cfg)
    if world > 1:  # seqtrain shares the windows out itself (data/sharding.py)
        args["use_distributed_sampler"] = False
    trainer = make_trainer(args, callbacks, run_dir, cfg.progress_bar)
    log_config(logger, cfg)
    datamodule = SeqDataModule(
        data, cfg.data.batch_size, cfg.data.num_workers,
        pin_memory=pin_memory(cfg.data.pin_memory, args["accelerator"]),
        persistent_workers=cfg.data.persistent_workers,
        shuffle_buffer=cfg.data.shuffle_buffer, seed=cfg.seed, season=cfg.eval.season or 0,
        first_epoch=next_epoch(resume_from) if resume_from else 0,
        rank=distributed.global_rank(), world=world,
        device=resident_device(cfg, data, trainer.strategy.root_device),
    )
    leakage = leakage_audit(cfg.data, cfg.task, data, datamodule) if distributed.global_rank() == 0 else None
    compiled = compile_module(cfg, module, datamodule, trainer)
    lr_find = _choose_learning_rate(cfg, trainer, module, datamodule, run_dir,
                                    resumed=resume_from is not None)
    _fit_or_interrupted(trainer, module, datamodule, run_dir, resume_from)
    return Fitted(trainer, datamodule, recorders.epochs, recorders.throughput, recorders.checkpoints,
                  recorders.predictions, checkpointing, str(args["precision"]), leakage, lr_find, logger,
                  compiled, recorders.pruning.pruned if recorders.pruning else None)


def _fit_or_interrupted(trainer: L.Trainer, module: SeqModule, datamodule: SeqDataModule, run_dir: Path,
                        resume_from: str | Path | None) -> None:
    """``trainer.fit`` (continued from ``resume_from``), or one line saying where to resume an
    interrupted run from."""
    interrupted = False
    try:
        # checkpoints hold tensors and plain data only, so they load without unpickling objects
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None,
                    weights_only=True)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C or SIGTERM: last.ckpt was written first
        interrupted = True
    except MisconfigurationException as exc:  # Lightning's check of a resumed run's epochs
        if resume_from is None or "You restored a checkpoint with current_epoch" not in str(exc):
            raise
        raise SeqtrainError(f"resume: {resume_from} has trained past trainer.max_epochs="
                            f"{trainer.max_epochs}; give a larger trainer.max_epochs to train on") from None
    if interrupted or trainer.interrupted:
        raise Interrupted(
            f"interrupted at step {trainer.global_step}; {run_dir / 'checkpoints' / 'last.ckpt'} is "
            f"saved: continue with  seqtrain resume={run_dir}"
        )


def best_metrics(fitted: Fitted, module: SeqModule) -> dict:
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


def validation_predictions(fitted: Fitted, module: SeqModule, keys: tuple[str, ...]) -> list[dict]:
    """The prediction records (``SeqModule.prediction_record``) of every validation window,
    ``keys`` of each only (held for the whole split: a streamed one may be larger than memory),
    from the checkpoint test reads, through the one prediction path; under DDP every rank's
    share, on every rank. Calibration is fit on these, never on test rows."""
    trainer, kept = fitted.trainer, KeepPredictions(keys)
    trainer.callbacks.append(kept)
    try:
        trainer.predict(module, dataloaders=fitted.datamodule.val_dataloader(),
                        ckpt_path=_tested_checkpoint(fitted), return_predictions=False, weights_only=True)
    finally:
        trainer.callbacks.remove(kept)
    records = kept.records
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
    records = validation_predictions(fitted, module, ("logits", "y") if classification
                                     else ("y", "pred", "quantiles"))
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
    """predictions.parquet, the plots, metrics.json (``seqtrain.report.run``), the results to the
    tracker, and the summary table."""
    quantiles = module.quantile_levels
    written = write_predictions(cfg, data, fitted, quantiles, run_dir)
    probabilities, intervals = _calibration_reports(cfg, data, written.frame, fitted.predictions.records,
                                                    calibration, run_dir)
    summary = write_run_report(cfg, data, module, fitted, best, tested, written, probabilities, intervals,
                               run_dir, wall, settle_malloc())  # what fit settled (cached)
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


def _fold_number(run_dir: Path) -> int | None:
    """The walk-forward fold a run folder holds (``fold_03`` -> 3), else None."""
    name = run_dir.name
    return int(name[5:]) if name.startswith("fold_") and name[5:].isdigit() else None


def write_demo_table(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """``data=synthetic``: a copy of ``cfg`` with ``data.path`` (by default the run folder's
    data/synthetic.parquet) and ``data.target`` (by default direction, or y for regression) filled
    in, the demo table written there (by rank 0; the other DDP ranks read it). ``cfg`` itself is
    left as it is, and returned as it is for ``data=parquet``."""
    generated = cfg.data.kind == "cases" and cfg.data.path is None
    if cfg.data.kind != "synthetic" and not generated:
        return cfg
    cfg = copy.deepcopy(cfg)
    data = cfg.data
    if data.target is None:
        data.target = "direction" if cfg.task == "classification" else "y"
    if data.path is None:
        data.path = str(run_dir / "data" / f"{'cases' if generated else 'synthetic'}.parquet")
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
    return cfg


def table_path(cfg: DictConfig) -> str:
    """The table the run reads (``data.path``, ``~`` expanded)."""
    return str(Path(cfg.data.path).expanduser())


def _refuse_finished_run(run_dir: Path) -> None:
    if (run_dir / "metrics.json").exists() or (run_dir / "checkpoints").exists():
        raise SeqtrainError(
            f"hydra.run.dir: {run_dir} already holds a run; choose a new folder so it is not overwritten"
        )
