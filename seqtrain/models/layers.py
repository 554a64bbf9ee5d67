"""Building blocks shared by several models."""

from __future__ import annotations

import torch
from torch import nn

from seqtrain.models.base import SequenceModel


class RecurrentNet(SequenceModel):
    """A stacked LSTM or GRU over the window, a linear head on its final hidden state.

    For a bidirectional network the head sees the forward direction's state after the last row
    and the backward direction's state after the first row: both have read the whole window,
    which ends at row t, so neither sees past the window.
    """

    cell: type[nn.RNNBase] = nn.LSTM

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 64,
                 num_layers: int = 2, dropout: float = 0.1, bidirectional: bool = False):
        super().__init__(input_size, output_size)
        self.rnn = self.cell(
            input_size, hidden_size, num_layers=num_layers, batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional,
        )
        directions = 2 if bidirectional else 1
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size * directions, output_size))
        self.directions = directions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, hidden = self.rnn(x)
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM returns (h, c)
        last_layer = h_n[-self.directions:]  # (directions, B, H)
        return self.head(torch.cat(list(last_layer), dim=-1))
