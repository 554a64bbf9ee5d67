"""LSTM (Hochreiter & Schmidhuber, 1997, "Long Short-Term Memory", Neural Computation 9(8)).

Arguments:
    input_size: features per row (from the data).
    output_size: classes, or output steps for regression (from the data).
    hidden_size: units per layer and direction.
    num_layers: stacked LSTM layers.
    dropout: between stacked layers and before the head.
    bidirectional: also read the window backwards (still only rows up to the window's end).
"""

from torch import nn

from seqtrain.models.layers import RecurrentNet


class LSTM(RecurrentNet):
    cell = nn.LSTM
