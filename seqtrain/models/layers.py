"""Building blocks shared by several models: heads, causal convolution, masked batch norm,
attention, positions."""

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
        return self.net(h).view(-1, self.output_steps, self.output_size)


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


def zero_padded(h: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    return h if real is None else h.masked_fill(~real, 0.0)


def fit_window(x: torch.Tensor, mask: torch.Tensor | None, length: int):
    """Windows ``(B, L, F)`` as ``(B, length, F)`` for a model sized by the window (its weights
    read fixed positions): a shorter window is left-padded, as ``data.pad_short`` pads it, so it
    gives what the same rows give inside a padded window. Padded rows are zero; the mask
    ``(B, length)`` is False on them (None: every row is real)."""
    rows = x.size(1)
    if rows > length:
        raise ValueError(f"a window of {rows} rows, longer than the {length} this model was built for")
    if mask is not None:
        x = x * mask.unsqueeze(-1).to(x.dtype)
    if rows == length:
        return x, mask
    if mask is None:
        mask = torch.ones(x.size(0), rows, dtype=torch.bool, device=x.device)
    pad = length - rows
    x = torch.cat([x.new_zeros(x.size(0), pad, x.size(2)), x], 1)
    return x, torch.cat([mask.new_zeros(x.size(0), pad), mask], 1)


class MaskedBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` over ``(B, C, L)`` with ``real`` ``(B, 1, L)``: while training, the batch
    statistics (and so the running ones) come from real rows only; padded rows come out zero.
    A training batch of a single real row (a last batch of one window of one row) has no
    statistic of its own: it is normalised with the running ones, which it leaves unchanged."""

    def forward(self, h: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training:
            return zero_padded(super().forward(h), real)
        if real is None:
            return self._in_training(h)
        rows = real[:, 0]
        normed = self._in_training(h.transpose(1, 2)[rows])  # (real rows, C)
        out = normed.new_zeros(h.size(0), h.size(2), h.size(1))
        out[rows] = normed
        return out.transpose(1, 2)

    def tokens(self, h: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """The same over ``(..., C)``, channels last (a Transformer's tokens), with ``real``
        ``(...)``: no transpose, so no copy of a non-contiguous input."""
        flat = h.reshape(-1, h.size(-1))
        if real is None:
            out = self._in_training(flat) if self.training else super().forward(flat)
        elif not self.training:
            out = super().forward(flat).masked_fill(~real.reshape(-1, 1), 0.0)
        else:
            keep = real.reshape(-1)
            out = flat.new_zeros(flat.shape)
            out[keep] = self._in_training(flat[keep])
        return out.view_as(h)

    def _in_training(self, h: torch.Tensor) -> torch.Tensor:
        if h.numel() > h.size(1):  # more than one value per channel
            return super().forward(h)
        return nn.functional.batch_norm(h, self.running_mean, self.running_var, self.weight, self.bias,
                                        training=False, eps=self.eps)


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


def _masked_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim where a row whose keys are all masked (-inf) gets zeros."""
    return scores.softmax(-1).nan_to_num(0.0)


def _key_mask(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """``(B, L_K)`` real-key mask as ``(B, 1, 1, L_K)``, to broadcast over heads and queries."""
    return None if key_mask is None else key_mask[:, None, None, :]


class FullAttention(nn.Module):
    """Scaled dot-product attention over ``(B, H, L, E)`` with an optional causal mask and an
    optional key mask ``(B, L_K)`` (False on padded keys, which then get no weight)."""

    def __init__(self, causal: bool = False, dropout: float = 0.0):
        super().__init__()
        self.causal, self.dropout = causal, nn.Dropout(dropout)

    def forward(self, q, k, v, key_mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        if self.causal:
            scores = scores.masked_fill(causal_mask(q.size(2), q.device)[: q.size(2), : k.size(2)],
                                        float("-inf"))
        if key_mask is not None:
            scores = scores.masked_fill(~_key_mask(key_mask), float("-inf"))
        weights = _masked_softmax(scores)
        return self.dropout(weights) @ v, weights


_EVAL_SAMPLES: dict[tuple[int, int, int], torch.Tensor] = {}


class ProbSparseAttention(nn.Module):
    """ProbSparse self-attention (Zhou et al., 2021, "Informer", AAAI), over ``(B, H, L, E)``.

    Only the ``u = factor * ceil(ln L_Q)`` queries with the largest sparsity measure
    ``M(q, K) = max_j(q k_j / sqrt(d)) - mean_j(q k_j / sqrt(d))``, estimated on
    ``factor * ceil(ln L_K)`` sampled keys, attend; the other ("lazy") queries output the mean of
    the values, or their cumulative mean under a causal mask (what they could see). With
    ``u >= L_Q`` every query is active and this is exactly full attention.

    Keys are sampled at random while training; in evaluation the sample comes from a fixed
    seed, so the same window always gets the same output. With a key mask ``(B, L)`` (False on
    padded rows; self-attention, so it masks queries too) padded keys are never sampled, weighed
    or averaged, and padded queries are never active.
    """

    def __init__(self, factor: int = 5, causal: bool = False, dropout: float = 0.0):
        super().__init__()
        self.factor, self.causal, self.dropout = factor, causal, nn.Dropout(dropout)

    def _budget(self, length: int) -> int:
        return max(1, min(length, self.factor * math.ceil(math.log(length)))) if length > 1 else 1

    def _sample(self, L_Q: int, L_K: int, n_sample: int, device) -> torch.Tensor:
        if self.training:
            return torch.randint(L_K, (L_Q, n_sample), device=device)
        key = (L_Q, L_K, n_sample)
        if key not in _EVAL_SAMPLES:  # evaluation: the same keys every time (and a constant to exporters)
            generator = torch.Generator().manual_seed(0)
            _EVAL_SAMPLES[key] = torch.randint(L_K, (L_Q, n_sample), generator=generator)
        return _EVAL_SAMPLES[key].to(device)

    def forward(self, q, k, v, key_mask=None):
        B, H, L_Q, E = q.shape
        L_K = k.size(2)
        n_sample, n_top = self._budget(L_K), self._budget(L_Q)
        real = key_mask[:, None, :].float() if key_mask is not None else None  # (B, 1, L_K)

        # estimate each query's sparsity on a sample of keys, ignoring keys it may not use
        sample = self._sample(L_Q, L_K, n_sample, q.device)
        k_sample = k[:, :, sample, :]  # (B, H, L_Q, n_sample, E)
        qk_sample = (q.unsqueeze(-2) @ k_sample.transpose(-2, -1)).squeeze(-2)
        usable = None  # (B, H, L_Q, n_sample) or broadcastable; None: every sampled key
        if self.causal:  # a query must not judge itself on keys it will never see
            usable = sample <= torch.arange(L_Q, device=q.device)[:, None]
        if key_mask is not None:
            padded = key_mask[:, sample].unsqueeze(1)
            usable = padded if usable is None else usable & padded
        if usable is None:
            sparsity = qk_sample.max(-1).values - qk_sample.mean(-1)
        else:
            mean = qk_sample.masked_fill(~usable, 0).sum(-1) / usable.sum(-1).clamp(min=1)
            sparsity = qk_sample.masked_fill(~usable, float("-inf")).max(-1).values - mean
            sparsity = sparsity.nan_to_num(float("-inf"), float("-inf"), float("-inf"))
        if key_mask is not None:  # padded queries are never active
            sparsity = sparsity.masked_fill(~key_mask[:, None, :L_Q], float("-inf"))
        top = sparsity.topk(n_top, dim=-1, sorted=False).indices  # (B, H, n_top)

        # lazy queries: the mean of the values they may see
        allowed = torch.ones(L_Q, L_K, device=q.device, dtype=q.dtype)
        if self.causal:
            allowed = (~causal_mask(L_Q, q.device)[:, :L_K]).to(q.dtype)
        allowed = allowed.expand(B, 1, L_Q, L_K)
        if real is not None:
            allowed = allowed * real.unsqueeze(1)
        weights = (allowed / allowed.sum(-1, keepdim=True).clamp(min=1)).expand(B, H, L_Q, L_K)
        kept = v if real is None else v * real.unsqueeze(-1)  # padded values count as absent
        count = (torch.ones(B, 1, L_K, device=q.device, dtype=v.dtype) if real is None
                 else real.to(v.dtype)).unsqueeze(-1)  # (B, 1, L_K, 1)
        if self.causal:  # cumulative means (self-attention: L_Q == L_K)
            context = kept.cumsum(2) / count.cumsum(2).clamp(min=1)
        else:
            context = (kept.sum(2, keepdim=True) / count.sum(2, keepdim=True).clamp(min=1)).expand(
                B, H, L_Q, v.size(-1)).clone()

        # active queries: exact attention
        q_top = torch.gather(q, 2, top.unsqueeze(-1).expand(-1, -1, -1, E))
        scores = q_top @ k.transpose(-2, -1) / math.sqrt(E)
        if self.causal:
            blocked = torch.arange(L_K, device=q.device)[None, None, None, :] > top.unsqueeze(-1)
            scores = scores.masked_fill(blocked, float("-inf"))
        if key_mask is not None:
            scores = scores.masked_fill(~_key_mask(key_mask), float("-inf"))
        top_weights = _masked_softmax(scores)
        index = top.unsqueeze(-1)
        context = context.scatter(2, index.expand(-1, -1, -1, v.size(-1)), self.dropout(top_weights) @ v)
        weights = weights.scatter(2, index.expand(-1, -1, -1, L_K), top_weights)
        return context, weights


class AttentionLayer(nn.Module):
    """Multi-head projections around an attention kernel: ``(B, L, D) -> (B, L, D)``."""

    def __init__(self, kernel: nn.Module, d_model: int, n_heads: int):
        super().__init__()
        self.kernel, self.n_heads = kernel, n_heads
        self.q, self.k, self.v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.out = nn.Linear(d_model, d_model)

    def forward(self, queries, keys, values, key_mask=None):
        """``key_mask`` ``(B, L_K)``: False on padded keys, which get no weight."""
        B, H = queries.size(0), self.n_heads

        def split(t):
            return t.view(B, t.size(1), H, -1).transpose(1, 2)

        context, weights = self.kernel(split(self.q(queries)), split(self.k(keys)), split(self.v(values)),
                                       key_mask=key_mask)
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
