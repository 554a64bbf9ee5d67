"""Model names as used on the command line (``model=NAME``) mapped to their classes."""

from __future__ import annotations

import inspect

from seqtrain.errors import SeqtrainError
from seqtrain.models.base import SequenceModel
from seqtrain.models.gru import GRU
from seqtrain.models.lstm import LSTM

MODELS: dict[str, type[SequenceModel]] = {"lstm": LSTM, "gru": GRU}


def build_model(name: str, args: dict, input_size: int, output_size: int) -> SequenceModel:
    """Instantiate model ``name`` with its config arguments and the shapes from the data."""
    if name not in MODELS:
        raise SeqtrainError(f"model.name: unknown model {name!r}; choose one of {', '.join(MODELS)}")
    cls = MODELS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "input_size", "output_size"}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise SeqtrainError(
            f"model.{unknown[0]}: not an argument of {name}; valid: {', '.join(sorted(accepted))}"
        )
    try:
        return cls(input_size=input_size, output_size=output_size, **args)
    except (TypeError, ValueError) as exc:
        raise SeqtrainError(f"model: cannot build {name}: {exc}") from None
