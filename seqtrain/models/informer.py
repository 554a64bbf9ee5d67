"""Informer (Zhou et al., 2021, "Informer: Beyond Efficient Transformer for Long Sequence
Time-Series Forecasting", AAAI).

Encoder: embedding (causal token convolution + sinusoidal positions) -> ``e_layers`` layers of
ProbSparse self-attention + feed-forward, with self-attention distilling between layers
(Conv1d -> BatchNorm -> ELU -> MaxPool stride 2, halving the sequence each time).
Decoder (generative style): its input is the last ``label_len`` rows of the window (the start
token) followed by one placeholder row per forecast step, in which only the known-in-advance
columns carry values; ``d_layers`` layers of masked (causal) self-attention, cross-attention over
the encoder output and feed-forward; all steps are predicted in one forward pass from the
placeholder positions. ``attention: full`` swaps ProbSparse for full attention, for comparison.

``self.attention`` holds the first encoder layer's self-attention averaged over heads,
``(B, L, L)``: how each input row weighs the other input rows. Left-padded rows (``mask``) are
zeroed and masked as keys in every attention, so they get no weight; the distilling layers leave
them out of batch norm's training statistics and of every max.

Arguments:
    input_size, output_size, output_steps, known_size: shapes from the data (see base.py).
    d_model, n_heads, d_ff: widths of the attention layers and feed-forward.
    e_layers, d_layers: encoder and decoder layers.
    factor: ProbSparse sampling factor c (u = c ln L active queries).
    attention: prob | full.
    distil: self-attention distilling between encoder layers.
    label_len: rows of the window fed to the decoder as its start token.
    dropout: everywhere.
"""

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.models.base import SequenceModel
from seqtrain.models.layers import (
    AttentionLayer,
    CausalConv1d,
    FullAttention,
    MaskedBatchNorm,
    PositionalEncoding,
    ProbSparseAttention,
    zero_padded,
)


class DataEmbedding(nn.Module):
    def __init__(self, input_size: int, d_model: int, dropout: float):
        super().__init__()
        self.token = CausalConv1d(input_size, d_model, kernel_size=3)
        self.position = PositionalEncoding(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.position(self.token(x.transpose(1, 2)).transpose(1, 2)))


class DistilLayer(nn.Module):
    """Conv -> BatchNorm -> ELU -> MaxPool(3, stride 2): halves the sequence length. Padded rows
    (``mask`` False) are zeros for the convolution, left out of batch norm's training statistics
    and never win the max; a pooled row is real when any row it covers is. A training batch of
    one real row is normalised with the running statistics (``MaskedBatchNorm``)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=3, padding=1)
        self.norm = MaskedBatchNorm(d_model)

    def forward(self, x, mask=None):
        real = None if mask is None else mask.unsqueeze(1)
        x = F.elu(self.norm(self.conv(zero_padded(x.transpose(1, 2), real)), real))
        if mask is not None:  # the lowest finite value, not minus infinity: compiled max-pool
            # backward fails on a pool window of it (three padded rows side by side)
            x = x.masked_fill(~real, torch.finfo(x.dtype).min)
            mask = F.max_pool1d(real.float(), kernel_size=3, stride=2, padding=1)[:, 0] > 0
        x = F.max_pool1d(x, kernel_size=3, stride=2, padding=1).transpose(1, 2)
        return (x.masked_fill(~mask.unsqueeze(-1), 0.0), mask) if mask is not None else (x, None)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d_ff, d_model), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class EncoderLayer(nn.Module):
    def __init__(self, attention: AttentionLayer, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.attention, self.ff = attention, FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        attended, weights = self.attention(x, x, x, key_mask=mask)
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.ff(x)), weights


class DecoderLayer(nn.Module):
    def __init__(self, self_attention: AttentionLayer, cross_attention: AttentionLayer,
                 d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.self_attention, self.cross_attention = self_attention, cross_attention
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, memory, mask=None, memory_mask=None):
        x = self.norms[0](x + self.dropout(self.self_attention(x, x, x, key_mask=mask)[0]))
        x = self.norms[1](x + self.dropout(self.cross_attention(x, memory, memory, key_mask=memory_mask)[0]))
        return self.norms[2](x + self.ff(x))


class Informer(SequenceModel):
    reads_future = True

    def __init__(self, input_size: int, output_size: int, output_steps: int = 1, known_size: int = 0,
                 d_model: int = 64, n_heads: int = 4, d_ff: int = 128, e_layers: int = 2,
                 d_layers: int = 1, factor: int = 5, attention: str = "prob", distil: bool = True,
                 label_len: int = 16, dropout: float = 0.1):
        super().__init__(input_size, output_size, output_steps, known_size)
        if attention not in ("prob", "full"):
            raise ValueError(f"attention must be prob or full, got {attention!r}")

        def kernel(causal: bool):
            if attention == "prob":
                return ProbSparseAttention(factor, causal=causal, dropout=dropout)
            return FullAttention(causal=causal, dropout=dropout)

        self.enc_embedding = DataEmbedding(input_size, d_model, dropout)
        # decoder rows: the start token's inputs, and the known columns of the label rows
        self.dec_embedding = DataEmbedding(input_size + known_size, d_model, dropout)
        self.encoder = nn.ModuleList(
            EncoderLayer(AttentionLayer(kernel(False), d_model, n_heads), d_model, d_ff, dropout)
            for _ in range(e_layers)
        )
        self.distil = nn.ModuleList(DistilLayer(d_model) for _ in range(e_layers - 1)) if distil else None
        self.decoder = nn.ModuleList(
            DecoderLayer(AttentionLayer(kernel(True), d_model, n_heads),
                         AttentionLayer(FullAttention(), d_model, n_heads), d_model, d_ff, dropout)
            for _ in range(d_layers)
        )
        self.enc_norm, self.dec_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.projection = nn.Linear(d_model, output_size)
        self.label_len = label_len

    def encode(self, x, mask=None):
        """Encoder output ``(B, L / 2^(e_layers-1), d_model)``, its real-row mask (None without
        padding) and the first layer's attention."""
        h, first = self.enc_embedding(x), None
        for i, layer in enumerate(self.encoder):
            h, weights = layer(h, mask)
            first = weights if first is None else first
            if self.distil is not None and i < len(self.distil):
                h, mask = self.distil[i](h, mask)
        return self.enc_norm(h), mask, first

    def decoder_input(self, x, future):
        """Start token rows (inputs, no known columns) then placeholder rows (known columns only)."""
        B, k = x.size(0), self.output_steps
        start = x[:, -min(self.label_len, x.size(1)):]
        start = torch.cat([start, start.new_zeros(B, start.size(1), self.known_size)], -1)
        placeholder = x.new_zeros(B, k, self.input_size + self.known_size)
        if future is not None:
            placeholder[..., self.input_size:] = future
        return torch.cat([start, placeholder], 1)

    def forward(self, x, future=None, target=None, mask=None):
        if mask is not None:  # padded rows: zero inputs, and masked keys in every attention
            x = x * mask.unsqueeze(-1).to(x.dtype)
        memory, memory_mask, first = self.encode(x, mask)
        decoder_mask = None
        if mask is not None:  # the start token's padded rows, then the placeholders (all real)
            start = mask[:, -min(self.label_len, x.size(1)):]
            decoder_mask = torch.cat([start, start.new_ones(x.size(0), self.output_steps)], 1)
        h = self.dec_embedding(self.decoder_input(x, future))
        for layer in self.decoder:
            h = layer(h, memory, decoder_mask, memory_mask)
        self.attention = first.mean(1).detach()
        return self.projection(self.dec_norm(h)[:, -self.output_steps:])
