"""GRU (Cho et al., 2014, "Learning Phrase Representations using RNN Encoder-Decoder for
Statistical Machine Translation", EMNLP).

The LSTM model of ``lstm.py`` with gated recurrent units: same arguments, same head.
"""

from seqtrain.models.lstm import LSTM


class GRU(LSTM):
    cell = "gru"
