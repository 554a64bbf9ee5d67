"""GRU (Cho et al., 2014, "Learning Phrase Representations using RNN Encoder-Decoder for
Statistical Machine Translation", EMNLP).

Arguments:
    input_size: features per row (from the data).
    output_size: classes, or output steps for regression (from the data).
    hidden_size: units per layer and direction.
    num_layers: stacked GRU layers.
    dropout: between stacked layers and before the head.
    bidirectional: also read the window backwards (still only rows up to the window's end).
"""

from torch import nn

from seqtrain.models.layers import RecurrentNet


class GRU(RecurrentNet):
    cell = nn.GRU
