"""PatchTST (Nie et al., 2023, "A Time Series is Worth 64 Words: Long-term Forecasting with
Transformers", ICLR; the supervised model).

Channel independence and patching: every input column is cut into patches of ``patch_len``
rows every ``stride`` rows (patches end at the window's last row; the oldest one is completed
with padding), each patch is mapped to ``d_model`` by one linear map shared by all columns,
plus a learned position per patch, and one Transformer encoder, shared by all columns, reads
each column's patches on its own: ``num_layers`` post-norm layers of multi-head self-attention
and a GELU feed-forward, each with batch norm, as in the paper (its reference code's residual
attention scores, passed from layer to layer, are left out). A column of L rows is about
2 L / patch_len tokens, not L.

seqtrain forecasts one target from many columns, so the head reads the encoded patches of all
columns at once (the paper flattens each channel's patches into its own forecast). A linear
map of them sums what each column says alone, which cannot express an interaction between
columns (one column's sign flipping what another means); ``head_hidden`` > 0 puts one hidden
GELU layer before the forecast, the only place where columns meet. Columns known in advance are
read as ordinary inputs up to the window's end, never at the label rows (``reads_future`` is
False). Per-window normalisation (the paper's RevIN) is ``instance_norm``'s, on for regression.

Short windows: ``patch_len`` is capped at a quarter of ``seq_length`` (at least four patches a
window; the paper's 16 over 336 rows gives 41 here) and the stride shrinks with it, keeping its
ratio: 16/8 becomes 8/4 for 32 rows, 4/2 for 16 (``summary()`` reports what was used).

The head reads fixed patch positions, so the model is built for ``seq_length`` rows and reads a
shorter window as left-padded. Padded rows (``mask`` False) are zero; a patch of padding alone
is masked as a key in every attention, left out of batch norm's statistics and zero before the
head, so the output is a function of the real rows alone, and a padded window gives the output
of its real rows given alone. ``self.attention`` ``(B, L, L)``: each layer's patch attention,
averaged over heads, columns and layers, spread back to rows: a row attends as the patches that
hold it do (their mean), and a patch's weight is shared by its real rows; padded rows get none.

Arguments:
    input_size, output_size, output_steps, known_size: shapes from the data (see base.py).
    patch_len, stride: rows per patch and between patch starts (capped for short windows).
    d_model, n_heads, d_ff: widths of the encoder (d_model divisible by n_heads).
    num_layers: encoder layers.
    dropout: in the encoder (attention output, feed-forward, embedding).
    head_hidden: width of the head's hidden layer (0: the paper's linear head).
    head_dropout: before each of the head's layers.
    seq_length: rows per window (from the data): the number of patches the head reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.models.base import SequenceModel
from seqtrain.models.layers import AttentionLayer, FullAttention, MaskedBatchNorm, StepsHead, fit_window


def patch_geometry(seq_length: int, patch_len: int, stride: int) -> tuple[int, int, int]:
    """``(patch_len, stride, patches)`` used for a window of ``seq_length`` rows: at least four
    patches, the stride scaled with the patch, patches covering the window and ending at its end."""
    if patch_len < 1 or stride < 1:
        raise ValueError(f"patch_len {patch_len}, stride {stride}: need at least 1 each")
    used = min(patch_len, max(1, seq_length // 4))
    step = max(1, min(used, round(stride * used / patch_len)))
    return used, step, -(-max(seq_length - used, 0) // step) + 1


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.attention = AttentionLayer(FullAttention(), d_model, n_heads)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(d_ff, d_model))
        self.norm1, self.norm2 = MaskedBatchNorm(d_model), MaskedBatchNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, real: torch.Tensor | None):
        """``h`` ``(N, n, D)`` tokens, ``real`` ``(N, n)`` (False on patches of padding alone)."""
        a, weights = self.attention(h, h, h, key_mask=real)
        h = self.norm1.tokens(h + self.dropout(a), real)
        return self.norm2.tokens(h + self.dropout(self.ff(h)), real), weights


class PatchTST(SequenceModel):
    def __init__(self, input_size: int, output_size: int, output_steps: int = 1, known_size: int = 0,
                 patch_len: int = 16, stride: int = 8, d_model: int = 16, n_heads: int = 4, d_ff: int = 64,
                 num_layers: int = 2, dropout: float = 0.1, head_hidden: int = 128, head_dropout: float = 0.0,
                 seq_length: int = 32):
        super().__init__(input_size, output_size, output_steps, known_size)
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.seq_length = seq_length
        self.patch_len, self.stride, self.patches = patch_geometry(seq_length, patch_len, stride)
        self.span = self.patch_len + (self.patches - 1) * self.stride  # rows the patches cover
        self.embedding = nn.Linear(self.patch_len, d_model)
        self.position = nn.Parameter(torch.empty(self.patches, d_model).uniform_(-0.02, 0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(num_layers))
        width = input_size * self.patches * d_model
        hidden = [nn.Dropout(head_dropout), nn.Linear(width, head_hidden), nn.GELU()] if head_hidden else []
        self.head = nn.Sequential(*hidden, StepsHead(head_hidden or width, output_steps, output_size,
                                                     head_dropout))
        starts = torch.arange(self.patches) * self.stride
        rows = torch.arange(self.span)
        member = ((rows >= starts[:, None]) & (rows < starts[:, None] + self.patch_len)).float()
        self.register_buffer("member", member, persistent=False)  # (patches, span): patch p holds row r

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        """Each column's encoded patches ``(B, F, n, D)`` (zero on patches of padding alone),
        the mean patch attention ``(B, n, n)`` and the mask of the rows the patches cover
        ``(B, span)`` (None: all real)."""
        x, real = fit_window(x, mask, self.seq_length)
        B, F_ = x.size(0), x.size(2)
        pre = self.span - self.seq_length
        x = F.pad(x, (0, 0, pre, 0))
        if real is not None:
            real = torch.cat([real.new_zeros(B, pre), real], 1)
        patches = x.transpose(1, 2).unfold(-1, self.patch_len, self.stride)  # (B, F, n, P)
        h = self.dropout(self.embedding(patches) + self.position).flatten(0, 1)  # (B F, n, D)
        # a patch is real when any of its rows is (None: the oldest patch is padded at most partly)
        token_mask = None if real is None else ((real.float() @ self.member.T) > 0).repeat_interleave(F_, 0)
        attention = 0
        for layer in self.layers:
            h, weights = layer(h, token_mask)
            attention = attention + weights.view(B, F_, *weights.shape[1:]).mean((1, 2))
        if token_mask is not None:
            h = h.masked_fill(~token_mask.unsqueeze(-1), 0.0)
        return h.view(B, F_, self.patches, -1), attention / len(self.layers), real

    def forward(self, x, future=None, target=None, mask=None):
        rows = x.size(1)
        h, attention, real = self.encode(x, mask)
        # the rows it was given: rows before them are padding, which no query weighs
        self.attention = self._over_rows(attention, real)[:, -rows:, -rows:]
        return self.head(h.flatten(1))

    def _over_rows(self, attention: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        """Patch attention ``(B, n, n)`` as row attention ``(B, span, span)``."""
        queries = self.member / self.member.sum(0)  # a row attends as the mean of its patches
        keys = self.member.expand(attention.size(0), -1, -1)
        if real is not None:
            keys = keys * real.unsqueeze(1).to(keys.dtype)
        keys = keys / keys.sum(-1, keepdim=True).clamp(min=1)  # a patch's weight over its real rows
        return (queries.T @ attention @ keys).detach()

    def summary(self) -> dict:
        return {**super().summary(), "patch_len": self.patch_len, "stride": self.stride,
                "patches": self.patches}
