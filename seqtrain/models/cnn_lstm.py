"""CNN-LSTM: a 1D convolutional feature extractor feeding an LSTM (in the spirit of Donahue et
al., 2015, "Long-term Recurrent Convolutional Networks", CVPR, applied to time series as in
Livieris et al., 2020, "A CNN-LSTM model for gold price time-series forecasting", Neural
Computing and Applications).

Each conv layer is causal (left padding), followed by ReLU and an optional max-pool over
non-overlapping groups of ``pool`` steps. Groups are aligned to end at the window's last row
(the window is left-padded to a multiple of ``pool``), so a pooled step covers only rows up to
its own end: causality survives pooling. The LSTM reads the pooled sequence; the head reads its
final state.

Arguments:
    input_size, output_size, output_steps, known_size: shapes from the data (see base.py).
    channels: output channels of each conv layer, e.g. [32, 32].
    kernel_size: width of every convolution.
    pool: max-pool size after each conv layer (1: no pooling).
    hidden_size, num_layers: of the LSTM.
    dropout: between LSTM layers and before the head.
"""

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.models.base import SequenceModel
from seqtrain.models.layers import CausalConv1d, RecurrentNet, StepsHead


class CausalPool(nn.Module):
    """Max over groups of ``size`` steps, groups ending at the last step: ``(B, C, L)``."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size == 1:
            return x
        pad = -x.size(-1) % self.size
        x = F.pad(x, (pad, 0), value=float("-inf")) if pad else x
        return F.max_pool1d(x, self.size)


class CNNLSTM(SequenceModel):
    def __init__(self, input_size: int, output_size: int, output_steps: int = 1, known_size: int = 0,
                 channels: tuple[int, ...] = (32, 32), kernel_size: int = 3, pool: int = 2,
                 hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.1):
        super().__init__(input_size, output_size, output_steps, known_size)
        layers, previous = [], input_size
        for width in channels:
            layers += [CausalConv1d(previous, width, kernel_size), nn.ReLU(), CausalPool(pool)]
            previous = width
        self.conv = nn.Sequential(*layers)
        self.rnn = RecurrentNet("lstm", previous, hidden_size, num_layers, dropout)
        self.head = StepsHead(self.rnn.output_size, output_steps, output_size, dropout)
        self.kernel_size, self.pool, self.n_conv = kernel_size, pool, len(channels)

    @property
    def receptive_field(self) -> int:
        """Input steps feeding one step of the conv output."""
        field, step = 1, 1
        for _ in range(self.n_conv):
            field += (self.kernel_size - 1) * step
            field += (self.pool - 1) * step
            step *= self.pool
        return field

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-step LSTM outputs over the pooled sequence ``(B, L', H)``."""
        conv = self.conv(x.transpose(1, 2))
        if mask is not None:  # a pooled step is real when any row it covers is
            pooled = mask.float().unsqueeze(1)
            for _ in range(self.n_conv):
                pooled = CausalPool(self.pool)(pooled)
            mask = pooled.squeeze(1) > 0
        return self.rnn(conv.transpose(1, 2), mask)[0]

    def forward(self, x, future=None, target=None, mask=None):
        return self.head(self.features(x, mask)[:, -1])

    def summary(self) -> dict:
        return {**super().summary(), "conv_receptive_field": self.receptive_field}
