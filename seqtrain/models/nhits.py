"""N-HiTS (Challu et al., 2023, "N-HiTS: Neural Hierarchical Interpolation for Time Series
Forecasting", AAAI; defaults as neuralforecast's ``NHITS``).

Stacks of MLP blocks, each reading the window at its own rate. A block max-pools every input
column over groups of ``pool_kernels[s]`` rows (groups end at the window's last row), flattens
the pooled window of all columns (and, with columns known in advance, their values at every
label row) into an MLP, and emits a backcast of the window, subtracted from what the next block
reads, and a forecast of a few coefficients per output, ``max(k // n_freq_downsample[s], 1)``
knots linearly interpolated to the ``k`` forecast steps.
Early stacks read a coarse window and forecast a smooth curve, later ones the detail; the
forecast is the sum over blocks.

Adapted to seqtrain's windows of many columns: the backcast and the residual span every input
column, and the forecast has ``O`` outputs per step (classes for classification, where k = 1
and each stack emits one knot). neuralforecast starts the forecast from the last value of the
target; here ``instance_norm`` (RevIN, on for regression by default) gives the level instead.
The last block has no backcast (nothing reads it).

The MLP reads fixed positions, so the model is built for ``seq_length`` rows: a shorter window
is read as left-padded. Padded rows (``mask`` False) are zero, never win a max (a group of
padding alone pools to zero) and stay zero in every residual: the output is a function of the
real rows alone, the same for a padded window as for its real rows given alone.

Arguments:
    input_size, output_size, output_steps, known_size: shapes from the data (see base.py).
    pool_kernels: max-pool width of each stack's input (one stack per entry).
    n_freq_downsample: per stack, forecast steps per knot (the expressiveness ratio's inverse).
    n_blocks: blocks per stack.
    hidden_size: width of every MLP layer.
    num_layers: hidden layers of each block's MLP (ReLU after each).
    dropout: after each hidden layer.
    seq_length: rows per window (from the data): the width of the MLP's input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.models.base import SequenceModel
from seqtrain.models.layers import fit_window


def interpolation(knots: int, steps: int) -> torch.Tensor:
    """``(knots, steps)``: linear interpolation from knots to steps as a matrix (as
    ``F.interpolate(mode="linear")`` does it, and a constant to exporters)."""
    eye = torch.eye(knots).unsqueeze(1)  # one knot at a time, (knots, 1, knots)
    return F.interpolate(eye, size=steps, mode="linear").squeeze(1)


class NHITSBlock(nn.Module):
    def __init__(self, seq_length: int, input_size: int, output_steps: int, output_size: int,
                 known_size: int, pool: int, knots: int, hidden_size: int, num_layers: int,
                 dropout: float, backcast: bool):
        super().__init__()
        self.pool, self.pooled = pool, -(-seq_length // pool)
        self.left = self.pooled * pool - seq_length  # padding so the groups end at the last row
        width, layers = self.pooled * input_size + output_steps * known_size, []
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden_size
        self.mlp = nn.Sequential(*layers)
        self.backcast = nn.Linear(width, seq_length * input_size) if backcast else None
        self.forecast = nn.Linear(width, knots * output_size)
        self.knots, self.output_size = knots, output_size
        self.register_buffer("interpolation", interpolation(knots, output_steps), persistent=False)

    def pooled_window(self, r: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        """``(B, L, F)`` -> ``(B, ceil(L / pool) F)``: each column's max over each group of rows."""
        if self.pool == 1:
            return r.flatten(1)
        h = r.transpose(1, 2)  # (B, F, L)
        if real is not None:  # the lowest finite value, never minus infinity (see InceptionTime)
            h = h.masked_fill(~real.unsqueeze(1), torch.finfo(h.dtype).min)
        h = F.max_pool1d(F.pad(h, (self.left, 0), value=torch.finfo(h.dtype).min), self.pool)
        if real is not None:
            grouped = F.pad(real, (self.left, 0), value=False).view(real.size(0), self.pooled, self.pool)
            h = h.masked_fill(~grouped.any(-1).unsqueeze(1), 0.0)  # groups of padding alone
        return h.transpose(1, 2).flatten(1)

    def forward(self, r: torch.Tensor, real: torch.Tensor | None, future: torch.Tensor | None):
        h = self.pooled_window(r, real)
        if future is not None:
            h = torch.cat([h, future.flatten(1)], 1)
        h = self.mlp(h)
        knots = self.forecast(h).view(-1, self.knots, self.output_size)
        forecast = torch.einsum("bno,nk->bko", knots, self.interpolation.to(knots.dtype))
        backcast = None if self.backcast is None else self.backcast(h).view_as(r)
        return backcast, forecast


class NHITS(SequenceModel):
    default_regression_loss = "mae"  # the paper's and neuralforecast's
    reads_future = True

    def __init__(self, input_size: int, output_size: int, output_steps: int = 1, known_size: int = 0,
                 pool_kernels: tuple[int, ...] = (2, 2, 1), n_freq_downsample: tuple[int, ...] = (4, 2, 1),
                 n_blocks: int = 1, hidden_size: int = 256, num_layers: int = 2, dropout: float = 0.0,
                 seq_length: int = 32):
        super().__init__(input_size, output_size, output_steps, known_size)
        pool_kernels, n_freq_downsample = list(pool_kernels), list(n_freq_downsample)
        if len(pool_kernels) != len(n_freq_downsample) or not pool_kernels:
            raise ValueError(f"pool_kernels {pool_kernels} and n_freq_downsample {n_freq_downsample}: "
                             "need one entry per stack each")
        if min(pool_kernels + n_freq_downsample) < 1 or n_blocks < 1 or num_layers < 1:
            raise ValueError("pool_kernels, n_freq_downsample, n_blocks and num_layers need at least 1")
        self.seq_length = seq_length
        plan = [(p, max(output_steps // f, 1)) for p, f in zip(pool_kernels, n_freq_downsample, strict=True)
                for _ in range(n_blocks)]
        self.blocks = nn.ModuleList(
            NHITSBlock(seq_length, input_size, output_steps, output_size, known_size, pool, knots,
                       hidden_size, num_layers, dropout, backcast=i < len(plan) - 1)
            for i, (pool, knots) in enumerate(plan))

    def forward(self, x, future=None, target=None, mask=None):
        r, real = fit_window(x, mask, self.seq_length)
        if self.known_size and future is None:  # nothing known: zeros, as Informer's placeholders
            future = r.new_zeros(r.size(0), self.output_steps, self.known_size)
        forecast = 0
        for block in self.blocks:
            backcast, step = block(r, real, future if self.known_size else None)
            forecast = forecast + step
            if backcast is not None:
                r = r - backcast
                if real is not None:  # padded rows stay zero
                    r = r * real.unsqueeze(-1).to(r.dtype)
        return forecast

    def summary(self) -> dict:
        return {**super().summary(), "knots": [block.knots for block in self.blocks]}
