"""The Lightning Trainer a run fits with: its arguments from the ``trainer`` group, the run's
callbacks, where batches are gathered, the network compiled in place, and a warm start."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from seqtrain.data.datamodule import SeqDataModule
from seqtrain.data.memory import TableData
from seqtrain.engine.callbacks import (
    CollectPredictions,
    EarlyStoppingAfterWarmup,
    EpochMetrics,
    NonFiniteGuard,
    ProgressBar,
    QuietProfiler,
    Throughput,
)
from seqtrain.engine.checkpoints import (
    AtomicCheckpointIO,
    DataEpoch,
    RandomState,
    RunCheckpoints,
    SaveOnInterrupt,
)
from seqtrain.engine.compiling import compile_mode, compile_network, worth_compiling
from seqtrain.engine.module import SeqModule
from seqtrain.engine.precision import resolve_precision
from seqtrain.engine.pruning import PruneRule, PruneTrial
from seqtrain.errors import SeqtrainError

log = logging.getLogger("seqtrain")

RESIDENT = ("auto", "true", "false")


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
    pruned: dict | None = None  # hparams_search.pruner: when and against what the trial was stopped


@dataclass
class Recorders:
    """The callbacks whose records the run reads once fitting is done."""

    epochs: EpochMetrics
    throughput: Throughput
    checkpoints: RunCheckpoints
    predictions: CollectPredictions
    pruning: PruneTrial | None = None


def run_callbacks(cfg: DictConfig, module: SeqModule, run_dir: Path, checkpointing: bool,
                  tracked: bool, pruning: PruneRule | None = None) -> tuple[Recorders, list]:
    """The run's callbacks, in the order Lightning calls them: the recorders, the random state,
    the data epoch, the NaN guard and the save on interrupt; then checkpoints (unless
    ``trainer.enable_checkpointing=false``), early stopping, a sweep trial's pruning (``pruning``),
    the bar and, for a tracker (``tracked``), the learning-rate monitor."""
    recorders = Recorders(EpochMetrics(run_dir / "metrics.csv"), Throughput(),
                          RunCheckpoints(run_dir / "checkpoints", module.monitor, module.mode),
                          CollectPredictions(),
                          PruneTrial(pruning, run_dir, module.monitor, module.mode) if pruning else None)
    callbacks = [recorders.epochs, recorders.throughput, recorders.predictions, RandomState(), DataEpoch(),
                 NonFiniteGuard(run_dir / "checkpoints" / "last_good.ckpt"),
                 SaveOnInterrupt(run_dir / "checkpoints" / "last.ckpt")]
    if checkpointing:
        callbacks.append(recorders.checkpoints)
    if cfg.early_stopping.patience is not None:
        callbacks.append(EarlyStoppingAfterWarmup(monitor=module.monitor, mode=module.mode,
                                                  patience=cfg.early_stopping.patience,
                                                  check_on_train_epoch_end=False))
    if recorders.pruning is not None:  # after early stopping: a trial it stops is not pruned
        callbacks.append(recorders.pruning)
    if cfg.progress_bar:
        # redrawn 4 times a second, as rich's Live by default: a redraw costs ~1.5 ms of CPU in a
        # thread beside training's, which slowed a 2-core CPU's training ~10% at Lightning's 100
        # a second and ~2% at 10 (0.6% at 4; benchmarks/train_throughput.py, BENCHMARKS.md)
        callbacks.append(ProgressBar(leave=False, refresh_rate=4))
    if tracked:
        from lightning.pytorch.callbacks import LearningRateMonitor

        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return recorders, callbacks


def trainer_args(cfg: DictConfig) -> dict:
    """The ``trainer`` group as Lightning Trainer arguments, its accelerator and precision
    resolved for this machine."""
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


def make_trainer(args: dict, callbacks: list, run_dir: Path, progress_bar: bool) -> L.Trainer:
    """Lightning's Trainer, writing checkpoints atomically; a bad argument is one line."""
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
    except (ValueError, RuntimeError, MisconfigurationException) as exc:  # e.g. trainer.devices=0
        raise SeqtrainError(f"trainer: {str(exc).splitlines()[0]}") from None


def pin_memory(setting, accelerator: str) -> bool:
    """``data.pin_memory``: ``auto`` pins host batches when training on a GPU."""
    if setting == "auto":
        return accelerator == "gpu"
    return bool(setting)


def resident_device(cfg: DictConfig, data, device: torch.device) -> torch.device | None:
    """``data.device_resident``: the device that keeps the prepared table and gathers batches
    itself, or None (DataLoaders from host memory). ``auto``: the GPU, when training on one
    and the table (in memory, not streamed) takes under half its free memory; ``true``: the
    run's ``device`` whatever it is (on the CPU: the same path without a DataLoader)."""
    setting = str(cfg.data.get("device_resident", "false")).lower()
    if setting == "false" or not isinstance(data, TableData):
        return None
    if setting == "true":
        return device
    if device.type != "cuda":
        return None
    needed = sum(a.nbytes for a in (data.inputs, data.labels, data.times, data.series)) * 2
    return device if needed < torch.cuda.mem_get_info(device)[0] / 2 else None


def compile_module(cfg: DictConfig, module: SeqModule, datamodule: SeqDataModule,
                   trainer: L.Trainer) -> str | None:
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


def next_epoch(checkpoint: str | Path) -> int:
    """The epoch a run resumed from ``checkpoint`` trains first (as Lightning counts it)."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)  # no weights read
    return int(saved["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
