"""Callbacks that record and guard a run: metrics per epoch and step, the test predictions,
throughput, the NaN guard, early stopping after warm-up, and Lightning's bar and profiler made
cheaper (what makes a run safe to stop and resume is in ``seqtrain.engine.checkpoints``)."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar
from lightning.pytorch.profilers import PassThroughProfiler

from seqtrain.engine.optim import optimizer_parameters
from seqtrain.errors import SeqtrainError
from seqtrain.files import write_csv_rows


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
        if trainer.is_global_zero:  # DDP: one process writes the run folder
            write_csv_rows(self.path, self.rows)
            write_csv_rows(self.steps_path, self.steps)

    def row(self, epoch: int) -> dict | None:
        return next((r for r in self.rows if r["epoch"] == epoch), None)


class KeepPredictions(L.Callback):
    """The prediction records of a ``Trainer.predict`` pass, only their ``keys`` (what the
    caller reads), gathered as one record: each key's values of every window in one tensor,
    allocated for the pass's batches at its first batch (grown by doubling if more come). Each
    batch's own small tensors, kept through a long pass, would pin the freed memory between
    them in the heap: on a streamed split of millions of windows that grew the process by
    hundreds of MiB besides the kept values themselves."""

    def __init__(self, keys: tuple[str, ...]):
        self.keys, self.kept, self.filled = keys, {}, 0

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        values = {key: outputs[key] for key in self.keys if key in outputs}
        if not values:
            return
        n = len(next(iter(values.values())))
        for key, value in values.items():
            held = self.kept.get(key)
            if held is None or len(held) < self.filled + n:
                counts = trainer.num_predict_batches
                counted = counts[dataloader_idx] if counts else math.inf
                first = n * (int(counted) if math.isfinite(counted) else 64)  # the pass's windows, as counted
                capacity = max(self.filled + n, 2 * len(held) if held is not None else first)
                grown = torch.empty((capacity, *value.shape[1:]), dtype=value.dtype)
                if held is not None:
                    grown[:self.filled] = held[:self.filled]
                self.kept[key] = grown
            self.kept[key][self.filled:self.filled + n] = value
        self.filled += n

    @property
    def records(self) -> list[dict]:
        return [{key: value[:self.filled] for key, value in self.kept.items()}] if self.filled else []


class CollectPredictions(L.Callback):
    """Gathers what the test pass produced, batch by batch, for the report to format: the
    module's prediction records, the attention maps of the first window of each batch (up to
    ``attention_windows``) and the mean variable importance over every test window."""

    def __init__(self, attention_windows: int = 256):
        self.attention_windows = attention_windows
        self.on_test_epoch_start()

    def on_test_epoch_start(self, trainer=None, module=None) -> None:
        self.records: list[dict] = []
        self.attention: list[dict] = []
        self.importance_sum, self.importance_count = None, 0

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.records.append(outputs)
        model = module.model
        if model.attention is not None and len(self.attention) < self.attention_windows:
            self.attention.append({"weights": model.attention[:1].float().cpu(),
                                   "window": batch["window"][:1].cpu(),
                                   "end_time": batch["end_time"][:1].cpu()})
        if model.variable_importance is not None:
            total = model.variable_importance.float().sum(0).cpu()
            self.importance_sum = total if self.importance_sum is None else self.importance_sum + total
            self.importance_count += len(model.variable_importance)

    def on_test_epoch_end(self, trainer, module) -> None:
        """DDP: every rank's share to rank 0, in rank order (the shares are contiguous, so the
        records come out in the order one process gives them)."""
        if trainer.world_size == 1:
            return
        import torch.distributed as dist

        mine = {"records": self.records, "attention": self.attention,
                "importance_sum": self.importance_sum, "importance_count": self.importance_count}
        shares = [None] * trainer.world_size
        dist.all_gather_object(shares, mine)
        self.records = [r for share in shares for r in share["records"]]
        self.attention = [a for share in shares for a in share["attention"]][:self.attention_windows]
        sums = [share["importance_sum"] for share in shares if share["importance_sum"] is not None]
        self.importance_sum = sum(sums) if sums else None
        self.importance_count = sum(share["importance_count"] for share in shares)

    @property
    def importance(self) -> torch.Tensor | None:
        """Mean variable-selection weight per input column over the test windows."""
        return None if self.importance_sum is None else self.importance_sum / self.importance_count


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

    def on_fit_end(self, trainer, module) -> None:
        """DDP: the samples of every rank over the slowest rank's time."""
        if trainer.world_size > 1:
            samples = torch.tensor(float(self.samples), device=module.device)
            seconds = torch.tensor(self.seconds, device=module.device)
            self.samples = int(trainer.strategy.reduce(samples, reduce_op="sum").item())
            self.seconds = float(trainer.strategy.reduce(seconds, reduce_op="max").item())

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


class EarlyStoppingAfterWarmup(EarlyStopping):
    """Lightning's early stopping, holding off while the learning rate still warms up (the
    module's ``warmup_steps``): a model that has not reached its peak rate has not had its chance
    yet, so patience counts from the peak."""

    @functools.cached_property
    def state_key(self) -> str:
        # Lightning formats it (a repr of monitor and mode) on each hook call of every step: the
        # same key, built once
        return super().state_key

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        if trainer.global_step < getattr(trainer.lightning_module, "warmup_steps", 0):
            return
        super()._run_early_stopping_check(trainer)


class ProgressBar(RichProgressBar):
    """Lightning's rich bar, showing the running training loss as ``loss`` and leaving out the
    epoch-averaged twin of each step metric. A training batch updates it only when it is due
    to be redrawn (``refresh_rate`` times a second) and at the epoch's last batch: each update
    reads the loss (a device sync on a GPU) and rebuilds the metrics shown, for nothing when
    steps come faster than redraws."""

    _updated = float("-inf")  # when a training batch last updated the bar (time.monotonic)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        if batch_idx + 1 >= self.total_train_batches or now - self._updated >= 1 / max(self.refresh_rate, 1):
            self._updated = now
            super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, module) -> dict:
        metrics = super().get_metrics(trainer, module)
        shown = {k: v for k, v in metrics.items() if not k.endswith("_epoch") and k != "v_num"}
        loss = getattr(module, "last_train_loss", None)  # the latest step's, kept by the module
        if loss is not None and trainer.state.fn == "fit":
            shown = {"loss": float(loss), **shown}
        return shown


class NonFiniteGuard(L.Callback):
    """Stops a run whose loss turns NaN/inf, before the bad step touches the weights.

    Checked after backward and before the optimizer step, so ``checkpoints/last_good.ckpt`` holds
    the last weights that gave a finite loss. Also logs the gradient norm (unscaled under AMP):
    its epoch mean in metrics.csv; and hands trackers the step's training loss and gradient norm
    on Lightning's logging steps (every ``log_every_n_steps``), directly: a ``self.log`` call on
    every step costs a traversal of Lightning's record, ~0.7 ms, 3% of a small model's step.
    """

    def __init__(self, checkpoint: Path):
        self.checkpoint = Path(checkpoint)
        self._norms: list[torch.Tensor] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self._norms = []

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        # the optimizer's own list, in clipping's order (walking the module tree cost ~0.6 ms a step)
        grads = [p.grad for p in optimizer_parameters(optimizer) if p.grad is not None]
        norm = None
        if grads:
            # kept as a tensor (no device sync); the epoch's mean goes to Lightning's log once, at
            # the epoch's last batch (each log call costs a traversal of Lightning's record)
            norm = torch.nn.utils.get_total_norm(grads).detach()
            module.step_grad_norm = norm  # clipping by norm uses it (SeqModule.configure_gradient_clipping)
            self._norms.append(norm)
            if getattr(module, "last_of_epoch", True):  # the module's own reading of its pass
                module.log("grad_norm", torch.stack(self._norms).mean(), on_step=False, on_epoch=True,
                           batch_size=1)
        loss = getattr(module, "last_train_loss", None)
        own_finite = loss is None or math.isfinite(float(loss))  # one read-back, no kernel
        finite = own_finite
        if trainer.world_size > 1:  # DDP: every rank stops together, or the others would wait forever
            finite = trainer.strategy.reduce_boolean_decision(own_finite, all=True)
        if finite:
            self._track_step(trainer, loss, norm)
            return
        if own_finite:  # another rank's loss turned
            loss = torch.tensor(float("nan"))
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
    def _track_step(trainer, loss: torch.Tensor | None, norm: torch.Tensor | None) -> None:
        """The step's values to the trackers on the steps Lightning logs at (its step count,
        its ``epoch`` key)."""
        step = trainer.global_step  # optimizer steps before this one: Lightning's logging step
        every = trainer.log_every_n_steps
        if not trainer.loggers or not (trainer.fast_dev_run or trainer.should_stop
                                       or (every > 0 and (step + 1) % every == 0)):
            return
        values = {"train_loss_step": loss, "grad_norm_step": norm}
        values = {k: float(v) for k, v in values.items() if v is not None}
        for logger in trainer.loggers:
            logger.log_metrics({**values, "epoch": trainer.current_epoch}, step=step)

    @staticmethod
    def _lr_setting(module) -> str:
        return f"{module.optim.get('lr')}" if hasattr(module, "optim") else "?"


class QuietProfiler(PassThroughProfiler):
    """Lightning's default profiler (which records nothing) without the generator-based context
    manager it builds on each of the ~150 hook calls of a training step (~1% of a small model's
    step on a CPU). Used when ``trainer.profiler`` is null; a profiler the user names is kept."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return self._nothing

