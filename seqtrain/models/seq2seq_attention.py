"""Sequence-to-sequence with attention: a recurrent encoder over the window and a recurrent
decoder that attends over all encoder states at every step (Bahdanau, Cho & Bengio, 2015,
"Neural Machine Translation by Jointly Learning to Align and Translate", ICLR — additive
attention; Luong, Pham & Manning, 2015, "Effective Approaches to Attention-based Neural Machine
Translation", EMNLP — multiplicative attention).

The decoder runs ``output_steps`` steps. Its input at step j is its previous output (a learned
start vector at j = 0; with probability ``teacher_forcing`` during training, the true previous
value instead) and the known-in-advance columns of label row j. Attention weights over the L
input rows are kept in ``self.attention`` ``(B, steps, L)``.

Arguments:
    input_size, output_size, output_steps, known_size: shapes from the data (see base.py).
    cell: lstm | gru, for encoder and decoder.
    hidden_size, num_layers: of encoder and decoder.
    attention: additive (Bahdanau) | dot (Luong, general score).
    teacher_forcing: probability of feeding the true previous value while training (regression).
    dropout: between recurrent layers and before the output layer.
"""

import torch
from torch import nn

from seqtrain.models.base import SequenceModel
from seqtrain.models.layers import AdditiveAttention, DotAttention, RecurrentNet

ATTENTIONS = {"additive": AdditiveAttention, "dot": DotAttention}


class Seq2SeqAttention(SequenceModel):
    reads_future = True

    def __init__(self, input_size: int, output_size: int, output_steps: int = 1, known_size: int = 0,
                 cell: str = "lstm", hidden_size: int = 64, num_layers: int = 1,
                 attention: str = "additive", teacher_forcing: float = 0.5, dropout: float = 0.1):
        super().__init__(input_size, output_size, output_steps, known_size)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}")
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be lstm or gru, got {cell!r}")
        self.encoder = RecurrentNet(cell, input_size, hidden_size, num_layers, dropout)
        self.start = nn.Parameter(torch.zeros(output_size))
        decoder_rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.decoder = decoder_rnn(output_size + known_size + hidden_size, hidden_size,
                                   num_layers=num_layers, batch_first=True,
                                   dropout=dropout if num_layers > 1 else 0.0)
        self.attend = ATTENTIONS[attention](hidden_size, hidden_size, hidden_size)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden_size, output_size))
        self.teacher_forcing = teacher_forcing

    def forward(self, x, future=None, target=None, mask=None):
        keys, _, state = self.encoder(x, mask)
        previous = self.start.expand(x.size(0), -1)
        outputs, weights = [], []
        for step in range(self.output_steps):
            query = (state[0] if isinstance(state, tuple) else state)[-1]
            context, w = self.attend(query, keys, mask)
            parts = [previous, context] if future is None else [previous, future[:, step], context]
            hidden, state = self.decoder(torch.cat(parts, -1).unsqueeze(1), state)
            out = self.out(torch.cat([hidden.squeeze(1), context], -1))
            outputs.append(out)
            weights.append(w)
            previous = out
            if target is not None and self.training and self.output_size == 1:
                use_truth = torch.rand(len(x), 1, device=x.device) < self.teacher_forcing
                previous = torch.where(use_truth, target[:, step : step + 1].to(out.dtype), out)
        self.attention = torch.stack(weights, 1).detach()
        return torch.stack(outputs, 1)
