"""Callbacks that make a run safe to stop and resume: checkpoints written whole, ``last.ckpt``
and ``best.ckpt`` in step with the metrics rows, the random state and the data epoch restored,
and ``last.ckpt`` saved on Ctrl-C or SIGTERM."""

from __future__ import annotations

import math
import random
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from seqtrain.files import atomic, copy_file


class RunCheckpoints(Checkpoint):
    """``last.ckpt`` after every training epoch and ``best.ckpt`` when the monitored validation
    value improves, both written after the epoch's row of metrics: a checkpoint always holds the
    metrics rows, the best epoch and the random state of one and the same moment, so a run
    resumed after any interruption keeps metrics.csv, metrics.json and best.ckpt in agreement.

    last.ckpt is written first and best.ckpt is a copy of it. A kill between the two leaves a
    best.ckpt older than the best epoch last.ckpt records, which is that same epoch: resuming
    repairs best.ckpt from last.ckpt.
    """

    def __init__(self, folder: Path, monitor: str, mode: str):
        self.folder, self.monitor, self.mode = Path(folder), monitor, mode
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_step: int | None = None

    @property
    def last_path(self) -> Path:
        return self.folder / "last.ckpt"

    @property
    def best_path(self) -> Path | None:
        return self.folder / "best.ckpt" if self.best_epoch is not None else None

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_step": self.best_step}

    def load_state_dict(self, state: dict) -> None:
        self._restored = dict(state)  # applied on a resumed fit only, as in EpochMetrics

    def on_fit_start(self, trainer, module) -> None:
        state = getattr(self, "_restored", None)
        if state is None:
            return
        self.best_score, self.best_epoch, self.best_step = (
            state["best_score"], state["best_epoch"], state["best_step"])
        self._restored = None
        if trainer.is_global_zero and self.best_step is not None and trainer.ckpt_path:
            self._repair_best(Path(trainer.ckpt_path))

    def _repair_best(self, resumed_from: Path) -> None:
        best = self.folder / "best.ckpt"
        if best.exists() and _saved_step(best) == self.best_step:
            return
        if _saved_step(resumed_from) == self.best_step:  # killed between last.ckpt and best.ckpt
            copy_file(resumed_from, best)

    def _improved(self, value) -> bool:
        if value is None or not math.isfinite(float(value)):
            return False
        if self.best_score is None:
            return True
        return float(value) < self.best_score if self.mode == "min" else float(value) > self.best_score

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        improved = self._improved(value)
        if improved:
            self.best_score = float(value)
            self.best_epoch, self.best_step = trainer.current_epoch, trainer.global_step
        trainer.save_checkpoint(self.last_path)
        if improved and trainer.is_global_zero:
            copy_file(self.last_path, self.folder / "best.ckpt")
        trainer.strategy.barrier("best.ckpt")  # DDP: no rank reads best.ckpt before it is complete


def _saved_step(path: Path) -> int | None:
    # memory-mapped: only the step is read, not the weights
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("global_step")


class RandomState(L.Callback):
    """Saves the Python, NumPy and torch random states in every checkpoint and puts them back as
    soon as a resumed fit restores its checkpoint (before Lightning creates the first loader
    iterator, which draws from them): a run resumed from an epoch's end draws the same shuffles,
    dropout masks and augmentations as if it had never stopped."""

    def setup(self, trainer, module, stage: str) -> None:
        self._fitting = stage == "fit"  # testing from best.ckpt must not rewind the random state

    def state_dict(self) -> dict:
        _, keys, position, has_gauss, cached = np.random.get_state()
        version, python_state, _ = random.getstate()
        return {"python": list(python_state), "python_version": version,
                "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_rest": [position, has_gauss, cached],
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def load_state_dict(self, state: dict) -> None:
        if not getattr(self, "_fitting", False):
            return
        random.setstate((state["python_version"], tuple(state["python"]), None))
        position, has_gauss, cached = state["numpy_rest"]
        np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(position),
                             int(has_gauss), float(cached)))
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class DataEpoch(L.Callback):
    """Tells a training loader which epoch starts (``set_epoch``), so that a streamed dataset
    shuffles each epoch differently, reproducibly from the seed, in every worker and after a
    resume alike."""

    def on_train_epoch_start(self, trainer, module) -> None:
        loader = trainer.train_dataloader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(trainer.current_epoch)


class SaveOnInterrupt(L.Callback):
    """On Ctrl-C (SIGINT) or SIGTERM, write ``last.ckpt`` before the run stops, to resume from."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = Path(checkpoint)

    def on_exception(self, trainer, module, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.state.fn != "fit":
            return
        if trainer.world_size == 1:
            trainer.save_checkpoint(self.checkpoint)
        elif trainer.is_global_zero:  # DDP: without the collective save, which a stopped rank never joins
            checkpoint = trainer._checkpoint_connector.dump_checkpoint()
            trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, self.checkpoint)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
