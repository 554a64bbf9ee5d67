"""LSTM (Hochreiter & Schmidhuber, 1997, "Long Short-Term Memory", Neural Computation 9(8)).

Stacked LSTM over the window; a linear head on the last layer's final hidden state emits all
forecast steps at once. Bidirectional: the forward state after the last row and the backward
state after the first row, both of which have read the whole window (which ends at row t).

Arguments:
    input_size, output_size, output_steps, known_size: shapes from the data (see base.py).
    hidden_size: units per layer and direction.
    num_layers: stacked LSTM layers.
    dropout: between stacked layers and before the head.
    bidirectional: also read the window backwards.
"""

from seqtrain.models.base import SequenceModel
from seqtrain.models.layers import RecurrentNet, StepsHead


class LSTM(SequenceModel):
    cell = "lstm"

    def __init__(self, input_size: int, output_size: int, output_steps: int = 1, known_size: int = 0,
                 hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.1,
                 bidirectional: bool = False):
        super().__init__(input_size, output_size, output_steps, known_size)
        self.rnn = RecurrentNet(self.cell, input_size, hidden_size, num_layers, dropout, bidirectional)
        self.head = StepsHead(self.rnn.output_size, output_steps, output_size, dropout)

    def forward(self, x, future=None, target=None, mask=None):
        _, last, _ = self.rnn(x, mask)
        return self.head(last)
