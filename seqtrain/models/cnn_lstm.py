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
    pool: max-pool size after each conv layer (1: no pooling, the default: pooling blurs the
        exact positions of the last rows, which short-horizon signals live on).
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
                 channels: tuple[int, ...] = (32, 32), kernel_size: int = 3, pool: int = 1,
                 hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.1):
        super().__init__(input_size, output_size, output_steps, known_size)
        widths = [input_size, *channels]
        self.convs = nn.ModuleList(CausalConv1d(a, b, kernel_size)
                                   for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.pooling = CausalPool(pool)
        previous = widths[-1]
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
        """Per-step LSTM outputs over the pooled sequence ``(B, L', H)``. Left-padded rows
        (``mask`` False) are zero at every convolution's input, lose every max against real rows
        (ReLU outputs are >= 0), and are skipped by the LSTM; a pooled step is real when any row
        it covers is."""
        h = x.transpose(1, 2)
        keep = None if mask is None else mask.unsqueeze(1).to(h.dtype)
        for conv in self.convs:
            if keep is not None:
                h = h * keep
            h = torch.relu(conv(h))
            if keep is not None:
                h, keep = h * keep, self.pooling(keep)
            h = self.pooling(h)
        return self.rnn(h.transpose(1, 2), None if keep is None else keep.squeeze(1) > 0)[0]

    def forward(self, x, future=None, target=None, mask=None):
        return self.head(self.features(x, mask)[:, -1])

    def summary(self) -> dict:
        return {**super().summary(), "conv_receptive_field": self.receptive_field}
