"""Temporal Convolutional Network (Bai, Kolter & Koltun, 2018, "An Empirical Evaluation of
Generic Convolutional and Recurrent Networks for Sequence Modeling", arXiv:1803.01271).

A stack of residual blocks; block i holds two weight-normalised dilated causal convolutions with
dilation 2^i, each followed by ReLU and dropout, plus a 1x1 convolution on the skip path when the
channel count changes. The output at step t depends on inputs <= t only; the head reads the last
step. Receptive field: 1 + 2 (kernel_size - 1) (2^levels - 1) steps. Left-padded rows are
zero at the input of every convolution, so a padded window gives the output of its real rows.

Arguments:
    input_size, output_size, output_steps, known_size: shapes from the data (see base.py).
    num_channels: channels of each level, e.g. [32, 32, 32] for three levels; or one number, the
        channels of as many levels as make the receptive field cover ``seq_length``.
    seq_length: rows per window (from the data), for ``num_channels`` given as one number.
    kernel_size: width of every convolution.
    dropout: after each convolution, and before the head.
"""

import torch
from torch import nn

from seqtrain.models.base import SequenceModel
from seqtrain.models.layers import CausalConv1d, StepsHead


def levels_to_cover(seq_length: int, kernel_size: int) -> int:
    """The fewest levels whose receptive field, 1 + 2 (k - 1) (2^levels - 1), covers a window
    (at least two, so a short window still gets a residual stack)."""
    if kernel_size < 2:
        raise ValueError(f"kernel_size {kernel_size}: needs at least 2 for the field to grow")
    levels = 2
    while 1 + 2 * (kernel_size - 1) * (2**levels - 1) < seq_length:
        levels += 1
    return levels


class TemporalBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 dropout: float):
        super().__init__()
        self.conv1 = CausalConv1d(in_channels, out_channels, kernel_size, dilation, weight_normed=True)
        self.conv2 = CausalConv1d(out_channels, out_channels, kernel_size, dilation, weight_normed=True)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep`` ``(B, 1, L)``: 0 on padded rows, which every convolution then reads as the
        zeros of its own causal padding."""
        h = self.dropout(torch.relu(self.conv1(x)))
        h = self.dropout(torch.relu(self.conv2(h if keep is None else h * keep)))
        out = torch.relu(h + self.skip(x))
        return out if keep is None else out * keep


class TCN(SequenceModel):
    def __init__(self, input_size: int, output_size: int, output_steps: int = 1, known_size: int = 0,
                 num_channels: int | tuple[int, ...] = 32, kernel_size: int = 3, dropout: float = 0.1,
                 seq_length: int = 32):
        super().__init__(input_size, output_size, output_steps, known_size)
        if isinstance(num_channels, int):
            num_channels = [num_channels] * levels_to_cover(seq_length, kernel_size)
        channels = [input_size, *num_channels]
        self.blocks = nn.ModuleList(
            TemporalBlock(channels[i], channels[i + 1], kernel_size, 2**i, dropout)
            for i in range(len(num_channels))
        )
        self.kernel_size, self.levels = kernel_size, len(num_channels)
        self.head = StepsHead(channels[-1], output_steps, output_size, dropout)

    @property
    def receptive_field(self) -> int:
        return 1 + 2 * (self.kernel_size - 1) * (2**self.levels - 1)

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-step features ``(B, L, C)``; step t depends on inputs <= t only, and never on
        left-padded rows (``mask`` False): they are zero at every layer, like causal padding."""
        h = x.transpose(1, 2)
        keep = None if mask is None else mask.unsqueeze(1).to(h.dtype)
        if keep is not None:
            h = h * keep
        for block in self.blocks:
            h = block(h, keep)
        return h.transpose(1, 2)

    def forward(self, x, future=None, target=None, mask=None):
        return self.head(self.features(x, mask)[:, -1])

    def summary(self) -> dict:
        return {**super().summary(), "receptive_field": self.receptive_field}
