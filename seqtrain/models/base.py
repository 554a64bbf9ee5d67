"""The contract every model follows, so the training code never special-cases one.

A model is a plain ``nn.Module``:

- built as ``Model(input_size=F, output_size=O, output_steps=k, known_size=K, **its arguments)``;
  the four shapes come from the data: ``F`` input columns, ``O`` outputs per step (classes, or
  1 or the number of quantiles for regression), ``k`` forecast steps (1 for classification),
  ``K`` columns known in advance; a model that sizes itself by the window (the TCN's levels)
  also takes ``seq_length`` ``L``;
- ``forward(x, future=None, target=None, mask=None)`` maps windows ``x`` ``(B, L, F)``, oldest
  row first and ending at row t, to ``(B, k, O)``. ``future`` ``(B, k, K)`` holds the
  known-in-advance columns at the label rows (only decoders read it); ``target`` ``(B, k)`` holds
  the scaled true labels, passed only while training (for teacher forcing); ``mask`` ``(B, L)``,
  when windows are left-padded, is False on padded (zero) rows, which must never change the
  output: recurrent models skip them, convolutions read them as zeros at every layer, attention
  gives them no weight;
- it declares what it reads: ``reads_future`` and ``respects_mask`` (class attributes), so the
  training code can say when a setting would do nothing for it, and ``not_exportable`` when
  neither TorchScript nor ONNX can express it;
- a model with attention stores its weights over the input steps in ``self.attention``,
  ``(B, Q, L)`` (Q query rows, e.g. decoder steps), at every forward; a model that weighs its
  input columns stores ``self.variable_importance`` ``(B, F)``;
- it knows nothing of Hydra, Lightning or Parquet.

Per-window (instance) normalisation is not a model's business: ``instance_norm.InstanceNorm``
wraps any of them; nor is knowing the series: ``series_inputs.SeriesInputs`` turns the static
code columns into learned vectors beside the inputs of any of them.
"""

from __future__ import annotations

import torch
from torch import nn


class SequenceModel(nn.Module):
    """Base class: the shapes every model is built with, and the summary facts."""

    #: regression loss this architecture is meant for, when the config says ``loss=auto``
    default_regression_loss = "mse"
    #: reads ``future`` (known-in-advance columns at the label rows); others see those columns
    #: only as ordinary inputs up to the window's end
    reads_future = False
    #: honours ``mask``: padded rows never change the output (tested for every registered model)
    respects_mask = True
    #: why ``seqtrain export`` cannot write this model (None: it can, in every format)
    not_exportable: str | None = None

    def __init__(self, input_size: int, output_size: int, output_steps: int = 1, known_size: int = 0):
        super().__init__()
        self.input_size, self.output_size = input_size, output_size
        self.output_steps, self.known_size = output_steps, known_size
        self.attention: torch.Tensor | None = None
        self.variable_importance: torch.Tensor | None = None

    def summary(self) -> dict:
        """Facts worth reporting about the built model."""
        parameters = sum(p.numel() for p in self.parameters())
        size = sum(p.numel() * p.element_size() for p in self.parameters())
        return {"parameters": parameters, "parameter_mb": round(size / 2**20, 3)}
