"""Dropout with torch's own masks, drawn faster on CPUs where torch draws them one by one.

On a CPU torch draws a dropout mask with ``bernoulli_``: through MKL's vectorised generator on
Intel CPUs, and elsewhere (AMD, ARM) one element at a time, each draw a uniform number from the
global generator compared with the keep probability. Drawing those same uniform numbers with
``uniform_`` and comparing them in one vectorised pass gives the same mask bit for bit, in a
quarter less time (BENCHMARKS.md: dropout took a third of a TCN's training step on such a CPU).
Whether this torch, on this CPU, draws its masks that way is checked once, by drawing both
from one private seed (``draws_masks_element_wise``); where it does not, torch's dropout runs
unchanged. Runs are the same either way.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

#: elements of the check: more than one thread's share of MKL's generator (800 each)
_CHECK_SIZE = 4096


@functools.cache
def draws_masks_element_wise() -> bool:
    """Whether torch's CPU ``bernoulli_(p)`` equals ``uniform_() < p`` drawn from the same
    generator (a private one: the global random stream is not touched)."""
    generator = torch.Generator().manual_seed(0)
    mask = torch.empty(_CHECK_SIZE).bernoulli_(0.5, generator=generator)
    generator.manual_seed(0)
    uniform = torch.empty(_CHECK_SIZE, dtype=torch.float64).uniform_(generator=generator)
    return torch.equal(mask, (uniform < 0.5).float())


class MatchedDropout(nn.Dropout):
    """``nn.Dropout`` giving torch's own outputs and gradients, with the mask drawn as above
    where that is torch's own mask (training, on a CPU), else torch's dropout itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and 0 < self.p < 1 and x.device.type == "cpu" and draws_masks_element_wise()):
            return super().forward(x)
        keep = 1.0 - self.p
        # torch's dropout on a CPU: noise = empty_like(x).bernoulli_(keep); noise.div_(keep); x * noise
        noise = torch.empty_like(x, dtype=torch.float64).uniform_().lt_(keep).to(x.dtype).div_(keep)
        return x.mul_(noise) if self.inplace else x * noise


def match_dropout(model: nn.Module) -> nn.Module:
    """``model`` with each ``nn.Dropout`` (exactly that class) replaced by ``MatchedDropout``
    of the same settings; other modules, and dropout inside fused layers (``nn.LSTM``'s between
    its layers), are left as they are."""
    for name, child in model.named_children():
        if type(child) is nn.Dropout:
            setattr(model, name, MatchedDropout(child.p, child.inplace))
        else:
            match_dropout(child)
    return model
