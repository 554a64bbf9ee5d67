"""The contract every model follows, so the training code never special-cases one.

A model is a plain ``nn.Module``:

- built as ``Model(input_size=F, output_size=O, **its own arguments)``; ``input_size`` and
  ``output_size`` come from the data (features, and classes or output steps);
- ``forward(x)`` maps windows ``(B, L, F)``, oldest row first, to ``(B, O)``: class logits
  for classification, the ``output_steps`` forecasts (scaled) for regression;
- it knows nothing of Hydra, Lightning or Parquet.
"""

from __future__ import annotations

from torch import nn


class SequenceModel(nn.Module):
    """Base class: holds the two shapes every model is built with."""

    def __init__(self, input_size: int, output_size: int):
        super().__init__()
        self.input_size = input_size
        self.output_size = output_size

    def summary(self) -> dict:
        """Facts worth printing about the built model."""
        return {"parameters": sum(p.numel() for p in self.parameters())}
