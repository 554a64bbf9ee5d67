"""The one LightningModule: the task decides loss, metrics and how outputs are read.

It knows nothing about any particular architecture: a model maps windows ``(B, L, F)`` to
``(B, k, O)`` (see ``seqtrain.models.base``). Regression is trained on the train-fitted scaled
target; metrics and predictions are reported in the target's own units.
"""

from __future__ import annotations

import math

import lightning.pytorch as L
import torch
import torch.nn.functional as F
import torchmetrics as tm
from torch import nn

from seqtrain.engine.augment import Augmenter
from seqtrain.engine.calibration import Calibration
from seqtrain.engine.optim import build_optimizer, build_scheduler, optimizer_parameters, warmup_steps

REGRESSION_LOSSES = ("mse", "mae", "huber", "quantile")


def _classification_metrics(n_classes: int) -> tm.MetricCollection:
    # inputs are well-formed by construction: skip torchmetrics' per-update argument checks
    quiet = {"validate_args": False}
    if n_classes == 2:
        return tm.MetricCollection({
            "acc": tm.classification.BinaryAccuracy(**quiet),
            "f1": tm.classification.BinaryF1Score(**quiet),
            "auroc": tm.classification.BinaryAUROC(**quiet),
        })
    return tm.MetricCollection({
        "acc": tm.classification.MulticlassAccuracy(n_classes, average="micro", **quiet),
        "f1": tm.classification.MulticlassF1Score(n_classes, average="macro", **quiet),
        "auroc": tm.classification.MulticlassAUROC(n_classes, **quiet),
    })


class TrainingAccuracy(tm.Metric):
    """Share of windows whose predicted class is the label, as torchmetrics' accuracy counts it
    (binary: class 1 when its probability is above 0.5; else the most probable class), for
    training steps: without the input check of torchmetrics' classification metrics, which reads
    a value back from the device on every update (and cost ~0.25 ms a step on a CPU)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, y: torch.Tensor) -> None:
        predicted = probs > 0.5 if probs.ndim == 1 else probs.argmax(dim=1)
        # in place: `+=` would also set the attribute through nn.Module's checks, on every step
        self.correct.add_(predicted.eq(y).sum())
        self.total.add_(y.numel())

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.float()


def _regression_metrics() -> tm.MetricCollection:
    return tm.MetricCollection({
        "mae": tm.MeanAbsoluteError(),
        "rmse": tm.MeanSquaredError(squared=False),
    })


class WeightedMean(tm.Metric):
    """A loss's mean over windows (each batch weighted by its size), as Lightning's own epoch
    mean computes it, summed over DDP ranks on compute. Not torchmetrics' ``MeanMetric``: its NaN
    check reads the value back on every update (a device sync per step on a GPU), and its
    check-free mode drops the weights. A NaN training loss is the guard's to catch."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor, weight: int) -> None:
        self.total.add_(value * weight)  # in place, as in TrainingAccuracy
        self.weight.add_(weight)

    def compute(self) -> torch.Tensor:
        return self.total / self.weight


def pinball_loss(pred: torch.Tensor, y: torch.Tensor, quantiles: torch.Tensor,
                 reduction: str = "mean") -> torch.Tensor:
    """Mean quantile (pinball) loss of ``pred`` ``(B, k, Q)`` against ``y`` ``(B, k)`` (each
    element's with ``reduction="none"``)."""
    error = y.unsqueeze(-1) - pred
    each = torch.maximum(quantiles * error, (quantiles - 1) * error)
    return each.mean() if reduction == "mean" else each


class SeqModule(L.LightningModule):
    """Wraps any sequence model for training, validation and test.

    Args:
        model: an ``nn.Module`` following ``seqtrain.models.base``.
        task: ``classification`` or ``regression``.
        n_classes: classes (classification; ignored for regression).
        optim: ``{name, lr, weight_decay, ...}`` (see ``seqtrain.engine.optim``).
        scheduler: ``{name, ...}``: none, onecycle, cosine (with warmup), plateau.
        loss: regression loss: mse, mae, huber, or quantile (the model then emits one output per
            quantile, and the median is the point forecast). Classification uses cross-entropy.
        quantiles: the quantiles for ``loss="quantile"``; must include 0.5.
        huber_delta: the Huber loss's threshold, in scaled target units.
        class_weights: per-class loss weights fit on training labels, or None.
        target_mean, target_std: the train-fitted target scaler, to report original units.
        monitor, mode: the monitored validation metric, for reduce-on-plateau.
        augment: transform name -> settings for ``Augmenter`` (training batches only).
        codes: the positions of the static code columns among the inputs, which augmentation
            leaves as they are.
    """

    def __init__(self, model: nn.Module, task: str, optim: dict, scheduler: dict, n_classes: int = 0,
                 loss: str = "mse", quantiles: list[float] | None = None, huber_delta: float = 1.0,
                 class_weights: list[float] | None = None,
                 target_mean: float = 0.0, target_std: float = 1.0,
                 monitor: str = "val_loss", mode: str = "min", augment: dict | None = None,
                 codes: list[int] | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["model"], logger=False)  # trackers get the whole config
        self.model = model
        self.task = task
        self.optim, self.scheduler = dict(optim), dict(scheduler)
        self.monitor, self.mode = monitor, mode  # what reduce-on-plateau watches
        self.augmenter = Augmenter(augment, n_classes if task == "classification" else 0, codes)
        self.loss_name, self.huber_delta = loss, huber_delta
        self.n_classes = n_classes
        self.register_buffer("quantiles", torch.tensor(quantiles or [], dtype=torch.float32),
                             persistent=False)
        # the quantiles the outputs forecast, as given (sorted): the one list predictions are named by
        self.quantile_levels = list(quantiles) if loss == "quantile" else None
        if task == "classification":
            weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
            self.register_buffer("class_weights", weights, persistent=False)
            make_metrics = lambda: _classification_metrics(n_classes)  # noqa: E731
            self.main_metric = "acc"
        else:
            make_metrics = _regression_metrics
            self.main_metric = "mae"
            self.median = quantiles.index(0.5) if loss == "quantile" else 0
        self.target_mean, self.target_std = target_mean, target_std
        # training keeps only the main metric: AUROC and F1 on every training step cost time
        train_metric = TrainingAccuracy() if task == "classification" else make_metrics()[self.main_metric]
        self.train_metrics = tm.MetricCollection({self.main_metric: train_metric}, prefix="train_")
        self.val_metrics = make_metrics().clone(prefix="val_")
        self.test_metrics = make_metrics().clone(prefix="test_")
        # losses as metrics: weighted by windows, and under DDP summed over every rank's windows
        # before dividing, so each window counts once
        self.train_loss_mean, self.val_loss_mean, self.test_loss_mean = (WeightedMean() for _ in range(3))
        self.warmup_steps = 0
        # fit after training on the validation windows (seqtrain.engine.calibration), applied by the readout
        self.calibration: Calibration | None = None
        # set before testing: the baselines that read a window's whole label history (DLinear),
        # each record's extra fields from ``y_history``
        self.history_baselines = None

    # set on every hook call (Lightning's _current_fx_name, ~46 times a step) or step: plain
    # values, set past nn.Module's checks for parameters, buffers and submodules
    _PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "step_grad_norm", "last_train_loss", "last_of_epoch"})

    def __setattr__(self, name: str, value) -> None:
        if name in self._PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def lr(self) -> float:
        """The optimizer's learning rate (what Lightning's learning-rate finder sets)."""
        return self.optim["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.optim["lr"] = float(value)
        self.hparams["optim"] = dict(self.optim)

    def forward(self, batch: dict) -> torch.Tensor:
        """``(B, k, O)`` model outputs; the truth reaches the model only while training."""
        target = batch["y"] if self.training and self.task == "regression" else None
        return self.model(batch["x"], future=batch.get("future"), target=target, mask=batch.get("mask"))

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        # batches are flat dicts of tensors: a direct move beats Lightning's generic traversal
        if all(v.device == device for v in batch.values()):
            return batch
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def loss(self, out: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The task's loss; with ``weight`` (``data.sample_weight``, training batches only) each
        window's loss weighted, as the class weights already are: ``Σ w·loss / Σ w``."""
        out = out.float()
        reduction = "mean" if weight is None else "none"
        if self.task == "classification":
            each = F.cross_entropy(out[:, 0], y, weight=self.class_weights, reduction=reduction)
            if weight is None:
                return each
            # torch divides by the class weights of hard labels, by the window count of soft ones
            soft = y.is_floating_point()  # mixup
            scale = weight if self.class_weights is None or soft else weight * self.class_weights[y]
            return (each * weight).sum() / scale.sum()
        if self.loss_name == "quantile":
            each = pinball_loss(out, y, self.quantiles, reduction)
        else:
            point = out[..., 0]
            if self.loss_name == "mae":
                each = F.l1_loss(point, y, reduction=reduction)
            elif self.loss_name == "huber":
                each = F.huber_loss(point, y, delta=self.huber_delta, reduction=reduction)
            else:
                each = F.mse_loss(point, y, reduction=reduction)
        if weight is None:
            return each
        each = each.reshape(len(weight), -1).mean(1)  # per window, over its steps (and quantiles)
        return (each * weight).sum() / weight.sum()

    def _to_units(self, values: torch.Tensor) -> torch.Tensor:
        return values.float() * self.target_std + self.target_mean

    def read(self, out: torch.Tensor, with_quantiles: bool = True) -> dict:
        """Model outputs ``(B, k, O)`` as what a user reads, on their device: the one readout of
        the metrics, the prediction records (test, ``seqtrain predict``, the API) and exported
        graphs. Class probabilities ``probs`` ``(B, C)`` (temperature-scaled when calibrated)
        beside the ``logits``, or point forecasts ``pred`` ``(B, k)`` in the target's units (and,
        with a quantile loss and ``with_quantiles``, every quantile ``quantiles`` ``(B, k, Q)``)."""
        if self.task == "classification":
            logits = out[:, 0].float()
            return {"probs": self._probabilities(logits), "logits": logits}
        read = {"pred": self._to_units(out[..., self.median])}
        if with_quantiles and self.loss_name == "quantile":
            read["quantiles"] = self._to_units(out)
        return read

    def _readout(self, out: torch.Tensor, y: torch.Tensor):
        """What metrics compare: probabilities and class ids, or point forecasts in target units."""
        read = self.read(out, with_quantiles=False)
        if self.task == "classification":
            return (read["probs"][:, 1] if self.n_classes == 2 else read["probs"]), y
        return read["pred"].flatten(), self._to_units(y).flatten()

    def _last_batch(self, split: str, batch_idx: int) -> bool:
        """Whether ``batch_idx`` ends this pass over ``split`` (always true where the count is
        unknown): epoch-level metric objects are handed to Lightning's logger once, there, as
        each hand-over costs a traversal of the metric (~0.7 ms a step, 2-8% of a small model's
        step); they are updated on every batch all the same."""
        trainer = self._trainer
        if trainer is None:
            return True
        if split == "train" and 0 < trainer.max_steps <= trainer.global_step + 1:
            return True  # trainer.max_steps ends the epoch here
        if split == "train":
            count = trainer.num_training_batches
        else:  # one loader per evaluation loop
            counts = trainer.num_val_batches if split == "val" else trainer.num_test_batches
            count = counts[0] if counts else float("inf")
        return not math.isfinite(count) or batch_idx + 1 >= count

    def _step(self, batch: dict, split: str, batch_idx: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        target = batch["y"]
        if split == "train" and self.augmenter.active:  # training batches only, on the device
            x, target = self.augmenter(batch["x"], batch["y"], batch.get("mask"))
            batch = {**batch, "x": x}
        out = self(batch)
        # sample weights weigh the training loss only: validation and test are scored unweighted
        loss = self.loss(out, target, batch.get("weight") if split == "train" else None)
        metrics = getattr(self, f"{split}_metrics")
        # training's one metric directly: the collection's bookkeeping costs more than its update
        updated = next(metrics.children()) if split == "train" else metrics
        updated.update(*self._readout(out.detach(), batch["y"]))
        size = len(batch["y"])
        last = batch_idx < 0 or self._last_batch(split, batch_idx)
        value = loss.detach()
        if split == "train":
            self.last_of_epoch = last  # the gradient norm's epoch mean is logged with it (NonFiniteGuard)
            # the step's own value: the progress bar's "loss", and trackers' train_loss_step (the guard)
            self.last_train_loss = value
        mean = getattr(self, f"{split}_loss_mean")
        mean.update(value, weight=size)
        if last:
            self.log(f"{split}_loss", mean, on_step=False, on_epoch=True, prog_bar=split == "val")
            for name, metric in metrics.items():
                self.log(name, metric, on_step=False, on_epoch=True, batch_size=size,
                         prog_bar=name == f"val_{self.main_metric}")
        return loss, out

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clipping by norm with the norm this step already measured (``step_grad_norm``, set by
        NonFiniteGuard over the optimizer's parameters in its order): what Lightning's clipping
        would compute a second time, the same number."""
        norm, self.step_grad_norm = getattr(self, "step_grad_norm", None), None
        if norm is None or not gradient_clip_val or (gradient_clip_algorithm or "norm") != "norm":
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        torch.nn.utils.clip_grads_with_norm_(optimizer_parameters(optimizer), float(gradient_clip_val), norm)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", batch_idx)[0]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val", batch_idx)

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        """Metrics, and the batch's predictions as a record (gathered by ``CollectPredictions``)."""
        _, out = self._step(batch, "test", batch_idx)
        return self.prediction_record(batch, out)

    def prediction_record(self, batch: dict, out: torch.Tensor) -> dict:
        """The outputs of a batch of windows, with their identity and truth, on the CPU: the one
        record of the test pass and of ``seqtrain predict`` (class probabilities, or point
        forecasts, quantiles and bands, in the target's units; see ``readout``). ``label_known``
        and ``y`` where the batch holds them (``RowBlock.batch(beyond_end=True)``; a table
        without the target)."""
        record = {key: batch[key].cpu() for key in ("window", "end_time", "label_time", "label_known", "y")
                  if key in batch}
        # for the baselines read from the last row; a copy of its own: a view would keep the
        # batch's whole inputs alive as long as the record
        record["x_last"] = batch["x"][:, -1].to("cpu", torch.float32, copy=True)
        for key in ("y_last", "y_season", "move"):  # what some baselines and the trading view read
            if key in batch:
                record[key] = batch[key].cpu()
        if self.history_baselines is not None and "y_history" in batch:  # (B, k), not the (B, L) history
            record.update(self.history_baselines(batch["y_history"].cpu()))
        return {**record, **self.readout(out)}

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """The batch's prediction record (the validation windows' predictions that calibration
        is fit on are gathered through ``Trainer.predict``)."""
        return self.prediction_record(batch, self(batch))

    def readout(self, out: torch.Tensor) -> dict:
        """``read``'s outputs on the CPU, with conformal bands ``lo_<level>``/``hi_<level>``
        ``(B, k)`` around the forecasts of a calibrated regression run."""
        record = {key: value.cpu() for key, value in self.read(out.detach()).items()}
        if self.task != "classification" and self.calibration is not None and self.calibration.margins:
            record.update(self.calibration.bands(record["pred"], record.get("quantiles")))
        return record

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.calibration is None or self.calibration.method != "temperature":
            return logits.softmax(-1)
        return self.calibration.probabilities(logits)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.optim)
        total = self.trainer.estimated_stepping_batches
        self.warmup_steps = warmup_steps(self.scheduler, total)  # early stopping waits for the peak
        schedule = build_scheduler(optimizer, self.scheduler, float(self.optim["lr"]), total,
                                   self.monitor, self.mode)
        if schedule is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": schedule}
