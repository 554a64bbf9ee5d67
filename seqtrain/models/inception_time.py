"""InceptionTime (Ismail Fawaz et al., 2020, "InceptionTime: Finding AlexNet for time series
classification", Data Mining and Knowledge Discovery 34(6)).

A stack of inception modules. Each squeezes its input to ``bottleneck`` channels with a 1x1
convolution and runs three convolutions of decreasing width over the result side by side; a
fourth branch max-pools the unsqueezed input over 3 rows and maps it with a 1x1 convolution.
The four outputs (``nb_filters`` channels each) are concatenated, batch-normalised and passed
through ReLU. A residual shortcut (1x1 convolution and batch norm) spans every three modules.
Global average pooling over the rows feeds a linear head that emits every forecast step.

Convolutions are centred ('same' padding, odd widths): a row's features read rows on both sides
of it, but only rows of the window, which ends at row t; nothing beyond t is ever read.
Left-padded rows (``mask`` False) are zero at every convolution's input and the lowest value at
every max-pool's (never a max, as the short window's own padding), are left out of the batch
statistics while training and out of the average: a padded window gives the output of its real
rows alone. The average makes the network blind to where in the window a pattern lies, but for
the edges of its convolutions' padding: a signal on the newest rows is found through those edges,
more slowly than by a model that reads the last row (BENCHMARKS.md, planted signal).

Arguments:
    input_size, output_size, output_steps, known_size: shapes from the data (see base.py).
    nb_filters: channels of each of a module's four branches (a module outputs four times that).
    depth: inception modules; a residual shortcut spans each group of three.
    kernel_size: the widest convolution; the others are a half and a quarter of it, each made
        odd (40 -> 39, 19, 9, as the reference implementations do) and capped by the window
        (``kernel_widths``).
    bottleneck: channels of the 1x1 squeeze before the convolutions (0: no squeeze; a single
        input column is never squeezed, as in the reference implementation).
    dropout: before the head (the paper uses none).
    seq_length: rows per window (from the data), for the cap on the widths.
"""

from __future__ import annotations

import torch
from torch import nn

from seqtrain.models.base import SequenceModel
from seqtrain.models.layers import MaskedBatchNorm, StepsHead, zero_padded


def kernel_widths(kernel_size: int, seq_length: int | None = None) -> list[int]:
    """The three convolution widths: ``kernel_size``, its half and its quarter, each odd so that
    'same' padding centres it. None is wider than ``2 seq_length - 1``: a tap more than
    ``seq_length - 1`` rows from the centre never meets a row of the window at any position, so a
    wider kernel computes the same function with weights that only ever multiply padding (a
    16-row window: 40 -> 31, 19, 9)."""
    if kernel_size < 1:
        raise ValueError(f"kernel_size {kernel_size}: needs at least 1")
    widths = [max(1, kernel_size // 2**i) for i in range(3)]
    widths = [w if w % 2 else w - 1 for w in widths]
    return widths if seq_length is None else [min(w, 2 * seq_length - 1) for w in widths]


class InceptionModule(nn.Module):
    def __init__(self, in_channels: int, nb_filters: int, widths: list[int], bottleneck: int):
        super().__init__()
        squeeze = bottleneck > 0 and in_channels > 1
        self.squeeze = nn.Conv1d(in_channels, bottleneck, 1, bias=False) if squeeze else nn.Identity()
        inner = bottleneck if squeeze else in_channels
        self.convs = nn.ModuleList(nn.Conv1d(inner, nb_filters, w, padding=w // 2, bias=False)
                                   for w in widths)
        self.pool = nn.MaxPool1d(3, stride=1, padding=1)
        self.pool_conv = nn.Conv1d(in_channels, nb_filters, 1, bias=False)
        self.norm = MaskedBatchNorm(4 * nb_filters)

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, C, L)``, zero on padded rows (``real`` False), as is the output."""
        squeezed = self.squeeze(x)
        if real is None:
            pooled = self.pool(x)
        else:  # a padded row never wins a max, as the pool's own padding never does (the lowest
            # finite value, not minus infinity: compiled max-pool backward fails on a window of it)
            pooled = zero_padded(self.pool(x.masked_fill(~real, torch.finfo(x.dtype).min)), real)
        h = torch.cat([*(conv(squeezed) for conv in self.convs), self.pool_conv(pooled)], dim=1)
        return torch.relu(self.norm(h, real))


class Shortcut(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.norm = MaskedBatchNorm(out_channels)

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return self.norm(self.conv(x), real)


class InceptionTime(SequenceModel):
    def __init__(self, input_size: int, output_size: int, output_steps: int = 1, known_size: int = 0,
                 nb_filters: int = 32, depth: int = 6, kernel_size: int = 40, bottleneck: int = 32,
                 dropout: float = 0.0, seq_length: int | None = None):
        super().__init__(input_size, output_size, output_steps, known_size)
        if depth < 1 or nb_filters < 1:
            raise ValueError(f"depth {depth}, nb_filters {nb_filters}: need at least 1 each")
        self.widths = kernel_widths(kernel_size, seq_length)
        width = 4 * nb_filters
        self.blocks = nn.ModuleList(
            InceptionModule(input_size if d == 0 else width, nb_filters, self.widths, bottleneck)
            for d in range(depth))
        # one shortcut per complete group of three modules, from the group's input to its output
        self.shortcuts = nn.ModuleList(Shortcut(input_size if g == 0 else width, width)
                                       for g in range(depth // 3))
        self.head = StepsHead(width, output_steps, output_size, dropout)

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last module's output ``(B, 4 nb_filters, L)``, zero on padded rows."""
        h = x.transpose(1, 2)
        real = None if mask is None else mask.unsqueeze(1)
        h = group_input = zero_padded(h, real)
        for d, block in enumerate(self.blocks):
            h = block(h, real)
            if d % 3 == 2:  # both terms are zero on padded rows
                h = group_input = torch.relu(h + self.shortcuts[d // 3](group_input, real))
        return h

    def forward(self, x, future=None, target=None, mask=None):
        h = self.features(x, mask)
        if mask is None:
            pooled = h.mean(-1)
        else:  # the average over real rows only
            pooled = h.sum(-1) / mask.sum(-1, keepdim=True).clamp(min=1).to(h.dtype)
        return self.head(pooled)

    def summary(self) -> dict:
        return {**super().summary(), "kernel_widths": self.widths}
