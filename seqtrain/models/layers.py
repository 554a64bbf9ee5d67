"""Building blocks shared by several models: heads, causal convolution, attention, positions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class StepsHead(nn.Module):
    """Linear map from a feature vector to all forecast steps at once: ``(B, H) -> (B, k, O)``."""

    def __init__(self, in_features: int, output_steps: int, output_size: int, dropout: float = 0.0):
        super().__init__()
        self.output_steps, self.output_size = output_steps, output_size
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, output_steps * output_size))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).view(len(h), self.output_steps, self.output_size)


class CausalConv1d(nn.Module):
    """Conv1d over ``(B, C, L)`` padded on the left only: output step t sees inputs <= t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                 weight_normed: bool = False):
        super().__init__()
        self.left = (kernel_size - 1) * dilation
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.conv = weight_norm(conv) if weight_normed else conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.left, 0)))


class PositionalEncoding(nn.Module):
    """Sinusoidal positions (Vaswani et al., 2017) added to ``(B, L, D)``."""

    def __init__(self, d_model: int, max_len: int = 10_000):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10_000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.size(1)]


def causal_mask(length: int, device) -> torch.Tensor:
    """``(L, L)`` boolean mask, True where query i may not see key j > i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


class FullAttention(nn.Module):
    """Scaled dot-product attention over ``(B, H, L, E)`` with an optional causal mask."""

    def __init__(self, causal: bool = False, dropout: float = 0.0):
        super().__init__()
        self.causal, self.dropout = causal, nn.Dropout(dropout)

    def forward(self, q, k, v):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        if self.causal:
            scores = scores.masked_fill(causal_mask(q.size(2), q.device)[: q.size(2), : k.size(2)],
                                        float("-inf"))
        weights = scores.softmax(-1)
        return self.dropout(weights) @ v, weights


class ProbSparseAttention(nn.Module):
    """ProbSparse self-attention (Zhou et al., 2021, "Informer", AAAI), over ``(B, H, L, E)``.

    Only the ``u = factor * ceil(ln L_Q)`` queries with the largest sparsity measure
    ``M(q, K) = max_j(q k_j / sqrt(d)) - mean_j(q k_j / sqrt(d))``, estimated on
    ``factor * ceil(ln L_K)`` sampled keys, attend; the other ("lazy") queries output the mean of
    the values, or their cumulative mean under a causal mask (what they could see). With
    ``u >= L_Q`` every query is active and this is exactly full attention.
    """

    def __init__(self, factor: int = 5, causal: bool = False, dropout: float = 0.0):
        super().__init__()
        self.factor, self.causal, self.dropout = factor, causal, nn.Dropout(dropout)

    def forward(self, q, k, v):
        B, H, L_Q, E = q.shape
        L_K = k.size(2)
        n_sample = min(L_K, self.factor * math.ceil(math.log(L_K + 1)))
        n_top = min(L_Q, self.factor * math.ceil(math.log(L_Q + 1)))

        # estimate each query's sparsity on a random sample of keys
        sample = torch.randint(L_K, (L_Q, n_sample), device=q.device)
        k_sample = k[:, :, sample, :]  # (B, H, L_Q, n_sample, E)
        qk_sample = (q.unsqueeze(-2) @ k_sample.transpose(-2, -1)).squeeze(-2)
        if self.causal:  # a query must not judge itself on keys it will never see
            future = sample > torch.arange(L_Q, device=q.device)[:, None]
            qk_sample = qk_sample.masked_fill(future, float("-inf"))
            seen = (~future).sum(-1).clamp(min=1)
            mean = qk_sample.masked_fill(future, 0).sum(-1) / seen
        else:
            mean = qk_sample.sum(-1) / L_K
        sparsity = qk_sample.max(-1).values - mean
        top = sparsity.topk(n_top, dim=-1, sorted=False).indices  # (B, H, n_top)

        # lazy queries: mean of the values they may see
        if self.causal:
            context = v.cumsum(dim=2) / torch.arange(1, L_Q + 1, device=v.device)[:, None]
        else:
            context = v.mean(dim=2, keepdim=True).expand(B, H, L_Q, v.size(-1)).clone()
        weights = torch.full((B, H, L_Q, L_K), 1.0 / L_K, device=q.device, dtype=q.dtype)
        if self.causal:
            weights = (~causal_mask(L_Q, q.device)[:, :L_K]).to(q.dtype)
            weights = weights / weights.sum(-1, keepdim=True)
            weights = weights.expand(B, H, L_Q, L_K).clone()

        # active queries: exact attention
        q_top = torch.gather(q, 2, top.unsqueeze(-1).expand(-1, -1, -1, E))
        scores = q_top @ k.transpose(-2, -1) / math.sqrt(E)
        if self.causal:
            blocked = torch.arange(L_K, device=q.device)[None, None, None, :] > top.unsqueeze(-1)
            scores = scores.masked_fill(blocked, float("-inf"))
        top_weights = scores.softmax(-1)
        index = top.unsqueeze(-1)
        context = context.scatter(2, index.expand(-1, -1, -1, v.size(-1)),
                                  self.dropout(top_weights) @ v)
        weights = weights.scatter(2, index.expand(-1, -1, -1, L_K), top_weights)
        return context, weights


class AttentionLayer(nn.Module):
    """Multi-head projections around an attention kernel: ``(B, L, D) -> (B, L, D)``."""

    def __init__(self, kernel: nn.Module, d_model: int, n_heads: int):
        super().__init__()
        self.kernel, self.n_heads = kernel, n_heads
        self.q, self.k, self.v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.out = nn.Linear(d_model, d_model)

    def forward(self, queries, keys, values):
        B, H = queries.size(0), self.n_heads

        def split(t):
            return t.view(B, t.size(1), H, -1).transpose(1, 2)

        context, weights = self.kernel(split(self.q(queries)), split(self.k(keys)), split(self.v(values)))
        context = context.transpose(1, 2).reshape(B, queries.size(1), -1)
        return self.out(context), weights


class AdditiveAttention(nn.Module):
    """Bahdanau et al. (2015) attention: ``score(s, h) = v^T tanh(W_s s + W_h h)``."""

    def __init__(self, query_size: int, key_size: int, hidden: int):
        super().__init__()
        self.w_query, self.w_key = nn.Linear(query_size, hidden), nn.Linear(key_size, hidden)
        self.v = nn.Linear(hidden, 1, bias=False)

    def forward(self, query, keys, mask=None):  # query (B, Dq), keys (B, L, Dk), mask (B, L)
        scores = self.v(torch.tanh(self.w_query(query).unsqueeze(1) + self.w_key(keys))).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return (weights.unsqueeze(1) @ keys).squeeze(1), weights


class DotAttention(nn.Module):
    """Luong et al. (2015) "general" attention: ``score(s, h) = s^T W h``."""

    def __init__(self, query_size: int, key_size: int, hidden: int | None = None):
        super().__init__()
        self.w = nn.Linear(key_size, query_size, bias=False)

    def forward(self, query, keys, mask=None):
        scores = (self.w(keys) @ query.unsqueeze(-1)).squeeze(-1) / math.sqrt(query.size(-1))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return (weights.unsqueeze(1) @ keys).squeeze(1), weights


class RecurrentNet(nn.Module):
    """Stacked LSTM/GRU over ``(B, L, F)``, returning per-step outputs and the final state of
    the last layer (both directions concatenated when bidirectional)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 bidirectional: bool = False):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
        self.directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.directions

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        """Per-step outputs ``(B, L, H)``, the final state of the last layer ``(B, H)`` and the
        full state. With ``mask`` (False on left-padded rows) padded rows are skipped entirely:
        the rows are packed, so the state is that after the last real row."""
        if mask is None or bool(mask.all()):
            outputs, state = self.rnn(x)
        else:
            outputs, state = self._packed(x, mask)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c)
        last = torch.cat(list(h_n[-self.directions:]), dim=-1)
        return outputs, last, state

    def _packed(self, x: torch.Tensor, mask: torch.Tensor):
        length = x.size(1)
        real = mask.sum(1).clamp(min=1)
        shift = (torch.arange(length, device=x.device) + (length - real)[:, None]) % length
        right_padded = torch.gather(x, 1, shift.unsqueeze(-1).expand_as(x))  # real rows first
        packed = nn.utils.rnn.pack_padded_sequence(right_padded, real.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        outputs, state = self.rnn(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=length)
        back = (torch.arange(length, device=x.device) - (length - real)[:, None]) % length
        outputs = torch.gather(outputs, 1, back.unsqueeze(-1).expand_as(outputs))  # left-padded again
        return outputs * mask.unsqueeze(-1), state
