"""Optimizers and learning-rate schedules from their config groups (pure torch, no Lightning).

Weight decay applies to weight matrices and convolution kernels only: biases, norm scales
(weight-norm magnitudes included) and other vectors are left undecayed, as is usual for
Adam-type training.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqtrain.errors import SeqtrainError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "onecycle", "cosine", "plateau")


def _norm_scales(model: nn.Module) -> set[int]:
    """Ids of weight-norm magnitudes (``g`` of ``w = g v / |v|``): norm scales, whatever their
    shape (torch keeps them as ``(out, 1, 1)`` tensors)."""
    scales = set()
    for module in model.modules():
        for parametrizations in getattr(module, "parametrizations", {}).values():
            if any(type(p).__name__ == "_WeightNorm" for p in parametrizations):
                scales.add(id(parametrizations.original0))
        if hasattr(module, "weight_g"):  # the older torch.nn.utils.weight_norm
            scales.add(id(module.weight_g))
    return scales


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    scales = _norm_scales(model)
    for parameter in model.parameters():
        if parameter.requires_grad:
            vector = parameter.ndim < 2 or id(parameter) in scales
            (no_decay if vector else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def check_optim(cfg: dict) -> None:
    """The optimizer settings, checked before any data is read."""
    if cfg.get("name") not in OPTIMIZERS:
        raise SeqtrainError(
            f"optim.name: unknown optimizer {cfg.get('name')!r}; choose one of {', '.join(OPTIMIZERS)}")
    lr = cfg.get("lr")
    if lr != "find" and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise SeqtrainError(f"optim.lr: {lr!r}; give a learning rate > 0, or find (Lightning's finder)")
    if float(cfg.get("weight_decay", 0.0)) < 0:
        raise SeqtrainError(f"optim.weight_decay: {cfg['weight_decay']!r}; must be >= 0")


def check_scheduler(cfg: dict) -> None:
    """The schedule settings, checked before any data is read."""
    kind = cfg.get("name", "none")
    if kind not in SCHEDULERS:
        raise SeqtrainError(
            f"scheduler.name: unknown scheduler {kind!r}; choose one of {', '.join(SCHEDULERS)}")
    for key in ("pct_start", "warmup_pct"):
        if key in cfg and not 0 <= float(cfg[key]) < 1:
            raise SeqtrainError(f"scheduler.{key}: {cfg[key]!r}; must be a share in [0, 1)")


def optimizer_parameters(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    """The optimizer's parameters in its order: the order gradient clipping measures their norm
    in (the NaN guard's norm and clipping's must be the same number)."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def build_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """``cfg``: ``name`` (adam | adamw | sgd), ``lr``, ``weight_decay``, and for sgd
    ``momentum`` and ``nesterov``."""
    name = cfg.get("name")
    groups = parameter_groups(model, float(cfg.get("weight_decay", 0.0)))
    lr = float(cfg["lr"])
    # foreach on every device (torch picks it on GPUs only): on a CPU the same arithmetic, bit
    # for bit, with the per-parameter loop in C++ instead of Python (tests/test_optim.py)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, foreach=True)
    if name == "sgd":
        momentum = float(cfg.get("momentum", 0.9))
        nesterov = bool(cfg.get("nesterov", False))
        if nesterov and momentum <= 0:
            raise SeqtrainError("optim.nesterov: needs optim.momentum > 0")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, foreach=True)
    raise SeqtrainError(f"optim.name: unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


class _RunLength:
    """Mixin for schedules whose shape depends on the run's length: a checkpoint restores the
    step count, but the length (and what follows from it) stays the one this run was built with,
    so ``seqtrain resume=RUN trainer.max_epochs=N`` follows the schedule of the new length from
    the step where the run stopped."""

    length_keys: tuple[str, ...] = ()

    def load_state_dict(self, state_dict: dict) -> None:
        own = {key: getattr(self, key) for key in self.length_keys}
        super().load_state_dict(state_dict)
        self.__dict__.update(own)
        if self.last_epoch > getattr(self, "total_steps", self.last_epoch):
            return  # the new length is already used up: the run ends without another step
        with torch.optim.lr_scheduler._enable_get_lr_call(self):
            rates = self.get_lr()  # the rate of the step the run continues with
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        self._last_lr = list(rates)


class OneCycle(_RunLength, torch.optim.lr_scheduler.OneCycleLR):
    length_keys = ("total_steps", "_schedule_phases")


class WarmupCosine(_RunLength, torch.optim.lr_scheduler.LambdaLR):
    pass  # its factor function is rebuilt for the run's length and never saved


def warmup_cosine(warmup_steps: int, total_steps: int, final_ratio: float):
    """LR factor per step: linear from 0 to 1 over ``warmup_steps``, then a cosine half-wave down
    to ``final_ratio`` at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def warmup_steps(cfg: dict, total_steps: float) -> int:
    """Optimizer steps the schedule spends raising the learning rate to its peak (0: none)."""
    share = {"onecycle": cfg.get("pct_start", 0.3), "cosine": cfg.get("warmup_pct", 0.0)}.get(
        cfg.get("name", "none"), 0.0)
    if not share or total_steps == float("inf"):
        return 0
    return int(round(float(share) * max(int(total_steps), 1)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, lr: float, total_steps: float,
                    monitor: str, mode: str) -> dict | None:
    """The Lightning ``lr_scheduler`` dict for ``cfg['name']``: stepped every batch (onecycle,
    cosine) or after each validation (plateau, on the monitored metric); None for ``none``."""
    kind = cfg.get("name", "none")
    if kind == "none":
        return None
    if kind == "plateau":
        schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=float(cfg.get("factor", 0.5)),
            patience=int(cfg.get("patience", 2)), min_lr=float(cfg.get("min_lr", 0.0)))
        return {"scheduler": schedule, "interval": "epoch", "monitor": monitor, "strict": False}
    if kind not in SCHEDULERS:
        raise SeqtrainError(
            f"scheduler.name: unknown scheduler {kind!r}; choose one of {', '.join(SCHEDULERS)}"
        )
    if total_steps == float("inf"):
        raise SeqtrainError(
            f"scheduler={kind}: needs a finite run; set trainer.max_epochs or trainer.max_steps"
        )
    total = max(int(total_steps), 1)
    if kind == "onecycle":
        schedule = OneCycle(
            optimizer, max_lr=lr, total_steps=total, pct_start=float(cfg.get("pct_start", 0.3)))
    else:
        warmup = int(round(float(cfg.get("warmup_pct", 0.0)) * total))
        final = float(cfg.get("eta_min", 0.0)) / lr
        schedule = WarmupCosine(optimizer, warmup_cosine(warmup, total, final))
    return {"scheduler": schedule, "interval": "step"}
