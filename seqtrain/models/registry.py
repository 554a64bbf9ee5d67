"""Model names as used on the command line (``model=NAME``) mapped to their classes."""

from __future__ import annotations

import importlib
import inspect

from seqtrain.errors import SeqtrainError
from seqtrain.models.base import SequenceModel
from seqtrain.models.dropout import match_dropout

# name -> "module:Class", imported on first use (the TFT pulls in pytorch-forecasting)
MODELS: dict[str, str] = {
    "lstm": "seqtrain.models.lstm:LSTM",
    "gru": "seqtrain.models.gru:GRU",
    "seq2seq_attention": "seqtrain.models.seq2seq_attention:Seq2SeqAttention",
    "tcn": "seqtrain.models.tcn:TCN",
    "tft": "seqtrain.models.tft:TFT",
    "informer": "seqtrain.models.informer:Informer",
    "cnn_lstm": "seqtrain.models.cnn_lstm:CNNLSTM",
    "inception_time": "seqtrain.models.inception_time:InceptionTime",
    "nhits": "seqtrain.models.nhits:NHITS",
    "patchtst": "seqtrain.models.patchtst:PatchTST",
}
SHAPES = {"self", "input_size", "output_size", "output_steps", "known_size", "seq_length"}


def model_class(name: str) -> type[SequenceModel]:
    if name not in MODELS:
        raise SeqtrainError(f"model.name: unknown model {name!r}; choose one of {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def check_model_args(name: str, args: dict) -> type[SequenceModel]:
    """The class of model ``name``, refusing a config argument it does not take."""
    cls = model_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - SHAPES
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise SeqtrainError(
            f"model.{unknown[0]}: not an argument of {name}; valid: {', '.join(sorted(accepted))}"
        )
    return cls


def build_model(name: str, args: dict, input_size: int, output_size: int, output_steps: int = 1,
                known_size: int = 0, seq_length: int | None = None) -> SequenceModel:
    """Instantiate model ``name`` with its config arguments and the shapes from the data; the
    window length goes to a model that sizes itself by it (``seq_length`` in its signature)."""
    cls = check_model_args(name, args)
    shapes = {"input_size": input_size, "output_size": output_size, "output_steps": output_steps,
              "known_size": known_size}
    if seq_length is not None and "seq_length" in inspect.signature(cls.__init__).parameters:
        shapes["seq_length"] = seq_length
    try:
        return match_dropout(cls(**shapes, **args))  # torch's masks, faster where drawn one by one
    except (TypeError, ValueError) as exc:
        raise SeqtrainError(f"model: cannot build {name}: {exc}") from None
