"""Reversible instance normalisation around any model (RevIN: Kim et al., 2022, "Reversible
Instance Normalization for Accurate Time-Series Forecasting against Distribution Shift", ICLR).

Each window's columns are scaled by that window's own mean and standard deviation (its rows,
all <= t, so nothing from the future; left-padded rows excluded), with a learnable per-column
affine map, before the model reads them. When the target's own history is an input and the
label is the target's value, the model's outputs are mapped back with the target column's window
statistics: the network forecasts the shape of what comes next, and the window supplies the
level and scale. A level never seen in training (a series that grew) then costs nothing.

Columns known in advance and calendar columns are left as they are: their meaning is their
absolute value (the hour, a holiday flag), and the decoder reads them unscaled at label rows.

Arguments:
    model: a model following ``seqtrain.models.base``.
    normalised: indices of the input columns to scale per window.
    target: index of the target's history among the inputs, to de-normalise outputs with; None
        leaves outputs as they are (classification, labels that are moves).
    to_label: ``(scale, shift)`` from the target column's input units to the label's units
        (the two are scaled by different train-fitted scalers).
"""

from __future__ import annotations

import torch
from torch import nn

from seqtrain.models.base import SequenceModel


class InstanceNorm(SequenceModel):
    def __init__(self, model: SequenceModel, normalised: list[int], target: int | None = None,
                 to_label: tuple[float, float] = (1.0, 0.0), eps: float = 1e-5):
        super().__init__(model.input_size, model.output_size, model.output_steps, model.known_size)
        self.model, self.target, self.eps = model, target, eps
        chosen = torch.zeros(model.input_size)
        chosen[list(normalised)] = 1.0
        self.register_buffer("chosen", chosen)  # 1 on normalised columns
        self.weight = nn.Parameter(torch.ones(model.input_size))
        self.bias = nn.Parameter(torch.zeros(model.input_size))
        self.to_label = (float(to_label[0]), float(to_label[1]))
        self.reads_future, self.respects_mask = model.reads_future, model.respects_mask
        self.not_exportable = model.not_exportable
        self.default_regression_loss = model.default_regression_loss

    # what the training code reads from a model, from the one inside
    attention = property(lambda self: self.model.attention, lambda self, value: None)
    variable_importance = property(lambda self: self.model.variable_importance, lambda self, value: None)

    def _window_statistics(self, x: torch.Tensor, mask: torch.Tensor | None):
        """Mean and std ``(B, 1, F)`` over each window's real rows; 0 and 1 on other columns."""
        if mask is None:
            mean = x.mean(1, keepdim=True)
            var = x.var(1, keepdim=True, unbiased=False)
        else:
            keep = mask.unsqueeze(-1).to(x.dtype)
            rows = keep.sum(1, keepdim=True).clamp_min(1.0)
            mean = (x * keep).sum(1, keepdim=True) / rows
            var = (((x - mean) * keep) ** 2).sum(1, keepdim=True) / rows
        std = torch.sqrt(var + self.eps)
        return mean * self.chosen, std * self.chosen + (1 - self.chosen)

    def _gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The learnable affine map, identity on columns left as they are."""
        return 1 + (self.weight - 1) * self.chosen, self.bias * self.chosen

    def forward(self, x, future=None, target=None, mask=None):
        mean, std = self._window_statistics(x.float(), mask)
        gain, shift = self._gain()
        scaled = ((x.float() - mean) / std * gain + shift).to(x.dtype)
        if mask is not None:  # padded rows stay zero, as the models expect
            scaled = scaled * mask.unsqueeze(-1).to(scaled.dtype)
        if self.target is None:
            return self.model(scaled, future=future, target=target, mask=mask)
        i, (scale, offset) = self.target, self.to_label
        # the label's units -> the target column's window-normalised units, and back
        level, spread = mean[:, :, i] * scale + offset, std[:, :, i] * scale  # (B, 1) in label units
        g, b = gain[i], shift[i]
        if target is not None:  # teacher forcing reads the truth as the model sees its inputs
            target = ((target.float() - level) / spread * g + b).to(target.dtype)
        out = self.model(scaled, future=future, target=target, mask=mask)
        stretch = spread.unsqueeze(-1) / (g + self.eps * self.eps)
        return ((out.float() - b) * stretch + level.unsqueeze(-1)).to(out.dtype)

    def summary(self) -> dict:
        return {**self.model.summary(), **super().summary(), "instance_norm": "revin"}
