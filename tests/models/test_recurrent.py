"""LSTM and GRU: the model contract (shapes, registry) and that they read the whole window."""

import pytest
import torch

from seqtrain.errors import SeqtrainError
from seqtrain.models.registry import MODELS, build_model


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("output_size", [1, 2, 5])
def test_output_shape(name, bidirectional, output_size):
    model = build_model(name, {"hidden_size": 8, "num_layers": 2, "bidirectional": bidirectional},
                        input_size=3, output_size=output_size)
    assert model(torch.randn(4, 11, 3)).shape == (4, output_size)
    assert model.summary()["parameters"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_every_row_of_the_window_reaches_the_output(name, bidirectional):
    torch.manual_seed(0)
    model = build_model(name, {"hidden_size": 8, "bidirectional": bidirectional, "dropout": 0.0},
                        input_size=2, output_size=1).eval()
    x = torch.randn(1, 6, 2, requires_grad=True)
    model(x).sum().backward()
    assert (x.grad.abs().sum(-1) > 0).all()


def test_registry_names_and_errors():
    assert set(MODELS) >= {"lstm", "gru"}
    with pytest.raises(SeqtrainError, match="unknown model 'rnn'"):
        build_model("rnn", {}, 2, 1)
    with pytest.raises(SeqtrainError, match="model.hidden: not an argument of lstm"):
        build_model("lstm", {"hidden": 3}, 2, 1)
