"""Sequence augmentations for training batches: vectorised over the batch, on its device.

Each transform maps windows ``x`` ``(B, L, F)`` to the same shape and dtype, using only the rows
of each window itself: nothing from after a window's last row can enter it (time warp and window
slicing keep the last row where it is). Only mixup touches labels. Each is applied to a sample
with probability ``p`` (see ``Augmenter``); Um et al. (2017) and Iwana & Uchida (2021) describe
them for time series, Zhang et al. (2018) mixup. Code columns (a series' id and static levels,
``data/statics.py``) are names, not quantities: no transform touches them, and a mixed window
keeps the codes of the window that weighs more in it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def jitter(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``sigma`` (inputs are standardised)."""
    return x + torch.randn_like(x) * sigma


def scaling(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Multiply each channel of each window by a factor drawn from N(1, sigma)."""
    return x * (1 + torch.randn(x.size(0), 1, x.size(2), device=x.device, dtype=x.dtype) * sigma)


def _smooth_curves(batch: int, length: int, channels: int, sigma: float, knots: int, like) -> torch.Tensor:
    """Random curves ``(B, L, C)`` around 1: N(1, sigma) at ``knots + 2`` evenly spaced points,
    linearly interpolated along time."""
    points = 1 + torch.randn(batch, channels, knots + 2, device=like.device, dtype=like.dtype) * sigma
    return F.interpolate(points, size=length, mode="linear", align_corners=True).transpose(1, 2)


def magnitude_warp(x: torch.Tensor, sigma: float, knots: int = 4) -> torch.Tensor:
    """Multiply by a smooth random curve per channel (Um et al. 2017)."""
    return x * _smooth_curves(x.size(0), x.size(1), x.size(2), sigma, knots, x)


def _resample(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Values of ``x`` at fractional row ``positions`` ``(B, L)``, by linear interpolation."""
    length = x.size(1)
    low = positions.floor().clamp(0, length - 1).long()
    high = (low + 1).clamp(max=length - 1)
    weight = (positions - low).unsqueeze(-1).to(x.dtype)
    gather = lambda index: torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.size(2)))  # noqa: E731
    return gather(low) * (1 - weight) + gather(high) * weight


def _onto_real_rows(x: torch.Tensor, unit: torch.Tensor, first: torch.Tensor | None) -> torch.Tensor:
    """``x`` resampled at ``unit`` ``(B, L)``: positions in [0, 1] laid over each window's real
    rows, from its first real row ``first`` ``(B,)`` (left padding; None: row 0) to its last row.
    Padded rows are never read and keep their values."""
    length = x.size(1)
    if first is None:
        return _resample(x, unit * (length - 1))
    rows = torch.arange(length, device=x.device)
    first = first.view(-1, 1).to(unit.dtype)
    span = (length - 1 - first).clamp(min=1)
    place = ((rows - first) / span).clamp(0, 1)  # each row's place among the real rows
    warped = _resample(unit.unsqueeze(-1), place * (length - 1))[..., 0]
    out = _resample(x, first + warped * span)
    return torch.where((rows >= first).unsqueeze(-1), out, x)


def time_warp(x: torch.Tensor, sigma: float, knots: int = 4,
              first: torch.Tensor | None = None) -> torch.Tensor:
    """Resample along a smooth random monotone warp of the time axis that keeps the first and
    the last (real) row in place (Um et al. 2017)."""
    speed = _smooth_curves(x.size(0), x.size(1), 1, sigma, knots, x)[..., 0].clamp(min=0.1)
    path = torch.cumsum(speed, dim=1) - speed[:, :1]
    return _onto_real_rows(x, path / path[:, -1:], first)


def window_slice(x: torch.Tensor, ratio: float, first: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the last ``r`` share of the (real) rows (r uniform in [ratio, 1]) and stretch them
    back over them (Le Guennec et al. 2016); the crop always ends at the window's last row."""
    kept = ratio + (1 - ratio) * torch.rand(x.size(0), 1, device=x.device)
    unit = (1 - kept) + torch.linspace(0, 1, x.size(1), device=x.device) * kept
    return _onto_real_rows(x, unit, first)


def channel_dropout(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Zero whole channels (features) of a window with probability ``rate`` each."""
    keep = torch.rand(x.size(0), 1, x.size(2), device=x.device) >= rate
    return x * keep.to(x.dtype)


def mixup(x: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float, codes: torch.Tensor | None = None):
    """Convex combinations of pairs of windows and of their one-hot labels, weights ~ Beta(alpha,
    alpha) (Zhang et al. 2018); the ``codes`` columns of the window that weighs more. Returns
    mixed ``x`` and soft labels ``(B, classes)``."""
    lam = torch.distributions.Beta(alpha, alpha).sample((x.size(0),)).to(x.device)
    partner = torch.randperm(x.size(0), device=x.device)
    one_hot = F.one_hot(y, n_classes).to(x.dtype)
    mixed_x = lam.view(-1, 1, 1).to(x.dtype) * x + (1 - lam.view(-1, 1, 1).to(x.dtype)) * x[partner]
    if codes is not None and len(codes):
        dominant = torch.where((lam >= 0.5).view(-1, 1, 1), x[..., codes], x[partner][..., codes])
        mixed_x = mixed_x.index_copy(2, codes, dominant)
    mixed_y = lam.view(-1, 1).to(x.dtype) * one_hot + (1 - lam.view(-1, 1).to(x.dtype)) * one_hot[partner]
    return mixed_x, mixed_y


class Augmenter:
    """The configured transforms, each on a random share ``p`` of the samples of a batch.

    ``cfg`` maps a transform name to its settings, e.g. ``{"jitter": {"p": 0.5, "sigma": 0.03}}``;
    ``p: 0`` turns a transform off. ``codes``: the positions of the code columns among the inputs.
    """

    TRANSFORMS = {"jitter": jitter, "scaling": scaling, "magnitude_warp": magnitude_warp,
                  "time_warp": time_warp, "window_slice": window_slice,
                  "channel_dropout": channel_dropout}
    ALONG_TIME = ("time_warp", "window_slice")  # these resample rows, so they need the padding

    def __init__(self, cfg: dict, n_classes: int = 0, codes: list[int] | None = None):
        self.cfg = {k: dict(v) for k, v in (cfg or {}).items() if float(v.get("p", 0)) > 0}
        unknown = set(self.cfg) - set(self.TRANSFORMS) - {"mixup"}
        if unknown:
            from seqtrain.errors import SeqtrainError

            raise SeqtrainError(f"augment.{sorted(unknown)[0]}: unknown transform; choose from "
                                f"{', '.join([*self.TRANSFORMS, 'mixup'])}")
        self.n_classes = n_classes
        self.codes = torch.tensor(codes or [], dtype=torch.long)

    @property
    def active(self) -> bool:
        return bool(self.cfg)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None):
        """Augmented ``x`` and labels (soft labels when mixup is on and classifying). With a
        padding ``mask``, the time transforms move values among real rows only, and padded rows
        stay zero whatever a transform or a mixup partner holds there."""
        first = None if mask is None else (~mask).sum(1)  # left padding: rows before the first real one
        codes = self.codes.to(x.device)
        kept = x[..., codes]
        for name, settings in self.cfg.items():
            if name == "mixup":
                continue
            args = {k: v for k, v in settings.items() if k != "p"}
            if name in self.ALONG_TIME:
                args["first"] = first
            chosen = torch.rand(x.size(0), 1, 1, device=x.device) < settings["p"]
            x = torch.where(chosen, self.TRANSFORMS[name](x, **args), x)
        if len(codes):
            x = x.index_copy(2, codes, kept)
        if "mixup" in self.cfg and self.n_classes:
            settings = self.cfg["mixup"]
            mixed_x, soft = mixup(x, y, self.n_classes, settings.get("alpha", 0.2), codes)
            chosen = torch.rand(x.size(0), device=x.device) < settings["p"]
            x = torch.where(chosen.view(-1, 1, 1), mixed_x, x)
            y = torch.where(chosen.view(-1, 1), soft, F.one_hot(y, self.n_classes).to(soft.dtype))
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        return x, y
