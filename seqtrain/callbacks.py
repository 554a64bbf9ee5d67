"""Callbacks that record and guard a run: metrics per epoch and step, throughput, NaN guard."""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from seqtrain.errors import SeqtrainError


class EpochMetrics(L.Callback):
    """Keeps one row of metrics per epoch (``metrics.csv``) and one per optimizer step
    (``steps.csv``: learning rate and training loss), rewriting both after each epoch.

    Rewriting the whole (small) file keeps every column even when some appear only in later
    epochs (e.g. validation every other epoch), and the replace is atomic.
    """

    def __init__(self, path: Path, steps_path: Path | None = None):
        self.path = Path(path)
        self.steps_path = Path(steps_path) if steps_path else self.path.with_name("steps.csv")
        self.rows: list[dict] = []
        self.steps: list[dict] = []  # per optimizer step: learning rate and training loss

    def state_dict(self) -> dict:  # saved in checkpoints, so a resumed run continues the files
        self._settle()
        return {"rows": self.rows, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        # Lightning also restores callbacks when testing from a checkpoint: only a resumed fit
        # may take the saved rows back (see on_fit_start)
        self._restored = state

    def on_fit_start(self, trainer, module) -> None:
        state = getattr(self, "_restored", None)
        if state is not None:
            self.rows, self.steps, self._restored = list(state["rows"]), list(state["steps"]), None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]  # the rate this step uses

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        # the loss stays a tensor until the epoch ends: reading it now would sync a GPU every step
        self.steps.append({"step": trainer.global_step, "epoch": trainer.current_epoch,
                           "lr": self._lr, "loss": loss.detach() if loss is not None else float("nan")})

    def _settle(self) -> None:
        for step in self.steps:
            if isinstance(step["loss"], torch.Tensor):
                step["loss"] = float(step["loss"])

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None}
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.endswith("_step") or key.startswith("test_"):
                continue
            row[key.removesuffix("_epoch")] = float(value)
        self.rows.append(row)
        self._settle()
        _write_csv(self.path, self.rows)
        _write_csv(self.steps_path, self.steps)

    def best(self, monitor: str, mode: str) -> dict | None:
        """The row of the best epoch by ``monitor``, or None if it was never logged."""
        rows = [r for r in self.rows if r.get(monitor) is not None and not math.isnan(r[monitor])]
        if not rows:
            return None
        pick = min if mode == "min" else max
        return pick(rows, key=lambda r: r[monitor])


def _write_csv(path: Path, rows: list[dict]) -> None:
    """All ``rows`` to ``path``, atomically (a killed run never leaves half a file)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


class Throughput(L.Callback):
    """Training samples per second over the time spent training: the clock runs from the start
    of each training epoch and stops when validation (with its checkpointing and early-stopping
    checks) begins, resuming at the next training batch."""

    def __init__(self):
        self.samples = 0
        self.seconds = 0.0
        self._since: float | None = None

    def state_dict(self) -> dict:
        return {"samples": self.samples, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self._restored = state  # applied on a resumed fit only, as in EpochMetrics

    def on_fit_start(self, trainer, module) -> None:
        state = getattr(self, "_restored", None)
        if state is not None:
            self.samples, self.seconds, self._restored = state["samples"], state["seconds"], None

    def _stop(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def on_train_epoch_start(self, trainer, module) -> None:
        self._since = time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.samples += len(batch["y"])

    def on_validation_start(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self._stop()

    def on_train_epoch_end(self, trainer, module) -> None:
        self._stop()

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


class ProgressBar(RichProgressBar):
    """Lightning's rich bar, showing the running training loss as ``loss`` and leaving out the
    epoch-averaged twin of each step metric."""

    def get_metrics(self, trainer, module) -> dict:
        metrics = super().get_metrics(trainer, module)
        shown = {k: v for k, v in metrics.items() if not k.endswith("_epoch") and k != "v_num"}
        if "train_loss_step" in shown:
            shown = {"loss": shown.pop("train_loss_step"), **shown}
        return shown


class NonFiniteGuard(L.Callback):
    """Stops a run whose loss turns NaN/inf, before the bad step touches the weights.

    Checked after backward and before the optimizer step, so ``checkpoints/last_good.ckpt`` holds
    the last weights that gave a finite loss. Also logs the gradient norm (unscaled under AMP).
    """

    def __init__(self, checkpoint: Path):
        self.checkpoint = Path(checkpoint)

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if grads:
            module.log("grad_norm", torch.nn.utils.get_total_norm(grads), on_step=True, on_epoch=True,
                       batch_size=1)
        loss = getattr(module, "last_train_loss", None)
        if loss is None or bool(torch.isfinite(loss)):
            return
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(self.checkpoint)
        lr = optimizer.param_groups[0]["lr"]
        raise SeqtrainError(
            f"loss became {float(loss)} at step {trainer.global_step + 1} (epoch {trainer.current_epoch}); "
            f"the weights before it are in {self.checkpoint}. Likely causes: a learning rate too high "
            f"(optim.lr={self._lr_setting(module)}, {lr:.3g} at that step) or extreme input values: "
            "lower optim.lr, clip gradients (trainer.gradient_clip_val) or check the data"
        )

    @staticmethod
    def _lr_setting(module) -> str:
        return f"{module.optim.get('lr')}" if hasattr(module, "optim") else "?"


class SaveOnInterrupt(L.Callback):
    """On Ctrl-C (SIGINT) or SIGTERM, write ``last.ckpt`` before the run stops, to resume from."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = Path(checkpoint)

    def on_exception(self, trainer, module, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.checkpoint)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)
