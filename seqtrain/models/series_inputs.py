"""What a global model knows of the series it looks at, the same way for every model.

The data put each series' static codes (its categorical static columns and, with a series
embedding, its id; ``seqtrain.data.statics``) among the input columns, constant within a series.
This wrapper reads them at each window's last row (always a real row, never a padded one),
looks up one learned vector per code column and feeds the vectors to the model inside as
ordinary input columns, repeated over the window's rows (zero on padded rows, as the models
expect). A code one past the known ones (a series or level training never met) reads the mean
of the known vectors: the "unknown" vector, learned by no one and biased to no one.

Arguments:
    model: a model following ``seqtrain.models.base``, built for the inputs without the code
        columns and with the vectors' widths after them.
    input_size: the input columns with the code columns.
    code_columns: the positions of the code columns among them.
    cardinalities: known codes per code column.
    widths: each code column's vector width.
    names: the code columns' names, for the summary.
"""

from __future__ import annotations

import torch
from torch import nn

from seqtrain.models.base import SequenceModel


def category_width(n: int) -> int:
    """A categorical column's vector width for ``n`` levels (pytorch-forecasting's and fastai's
    rule of thumb, capped for small models)."""
    return max(1, min(16, round(1.6 * n ** 0.56)))


class SeriesInputs(SequenceModel):
    def __init__(self, model: SequenceModel, input_size: int, code_columns: list[int],
                 cardinalities: list[int], widths: list[int], names: list[str] | None = None):
        super().__init__(input_size, model.output_size, model.output_steps, model.known_size)
        self.model = model
        self.embeddings = nn.ModuleList(nn.Embedding(n, w)
                                        for n, w in zip(cardinalities, widths, strict=True))
        keep = [i for i in range(input_size) if i not in set(code_columns)]
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long), persistent=False)
        self.register_buffer("codes", torch.tensor(code_columns, dtype=torch.long), persistent=False)
        self.widths = list(widths)
        self.names = list(names or [f"code {j}" for j in range(len(widths))])
        self.reads_future, self.respects_mask = model.reads_future, model.respects_mask
        self.not_exportable = model.not_exportable
        self.default_regression_loss = model.default_regression_loss

    attention = property(lambda self: self.model.attention, lambda self, value: None)

    @property
    def variable_importance(self):
        """The inner model's weights per input column, each code column's the sum over its vector."""
        inner = self.model.variable_importance
        if inner is None:
            return None
        n = len(self.keep)
        out = inner.new_zeros(inner.shape[0], self.input_size)
        out[:, self.keep] = inner[:, :n]
        sums = torch.split(inner[:, n:], self.widths, dim=1)
        out[:, self.codes] = torch.stack([s.sum(1) for s in sums], 1)
        return out

    @variable_importance.setter
    def variable_importance(self, value) -> None:
        pass

    def forward(self, x, future=None, target=None, mask=None):
        codes = x[:, -1].index_select(1, self.codes).round().long()  # (B, S): the last row is real
        vectors = []
        for j, embedding in enumerate(self.embeddings):
            known = embedding.weight
            table = torch.cat([known, known.mean(0, keepdim=True)])  # the last row: unknown
            vectors.append(table[codes[:, j].clamp(0, len(known))])
        rows = x.index_select(2, self.keep)
        spread = torch.cat(vectors, 1).to(x.dtype).unsqueeze(1).expand(-1, x.shape[1], -1)
        if mask is not None:
            spread = spread * mask.unsqueeze(-1).to(spread.dtype)
        return self.model(torch.cat([rows, spread], 2), future=future, target=target, mask=mask)

    def summary(self) -> dict:
        vectors = " · ".join(f"{n} {w}" for n, w in zip(self.names, self.widths, strict=True))
        return {**self.model.summary(), **super().summary(), "series_vectors": vectors}
