"""Reversible instance normalisation: windows scaled by their own rows, forecasts mapped back."""

import json

import pytest
import torch

from seqtrain.models.base import SequenceModel
from seqtrain.models.instance_norm import InstanceNorm
from seqtrain.models.registry import MODELS, build_model

SMALL = {"lstm": {"hidden_size": 8}, "gru": {"hidden_size": 8}, "seq2seq_attention": {"hidden_size": 8},
         "tcn": {"num_channels": [8, 8], "kernel_size": 2},
         "tft": {"hidden_size": 8, "hidden_continuous_size": 4, "attention_head_size": 2},
         "informer": {"d_model": 8, "n_heads": 2, "d_ff": 16, "label_len": 4},
         "cnn_lstm": {"channels": [8], "hidden_size": 8},
         "inception_time": {"nb_filters": 4, "depth": 3, "kernel_size": 8, "bottleneck": 4},
         "nhits": {"hidden_size": 8},
         "patchtst": {"d_model": 8, "n_heads": 2, "d_ff": 16, "num_layers": 2, "head_hidden": 8}}
TO_LABEL = (2.0, -0.5)  # target column's input units -> label units


def wrapped(name, steps=3, outputs=1):
    """``name`` with columns 0 and 2 (the target, last) normalised; column 1 left alone."""
    torch.manual_seed(0)
    model = build_model(name, SMALL[name], 3, outputs, steps, 0)
    return InstanceNorm(model, [0, 2], target=2, to_label=TO_LABEL).eval()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_shifted_and_scaled_history_gives_the_same_forecast_shifted_and_scaled(name):
    """The network sees each window only as its own shape: move the target's history by c and
    stretch it by s, and the forecast (label units) moves and stretches by the same, whatever the
    level — a level never seen in training costs nothing."""
    model = wrapped(name)
    x = torch.randn(4, 12, 3)
    out = model(x)
    moved = x.clone()
    moved[..., 2] = x[..., 2] * 3.0 + 40.0
    moved[..., 0] = x[..., 0] - 7.0  # another normalised column: its level does not matter
    scale, shift = TO_LABEL
    # in the column's units (label = scale * column + shift) the forecast is stretched and moved
    expected = (3.0 * (out - shift) / scale + 40.0) * scale + shift
    torch.testing.assert_close(model(moved), expected, rtol=1e-4, atol=1e-3)


def test_columns_left_alone_keep_their_level():
    model = wrapped("lstm")
    x = torch.randn(4, 12, 3)
    moved = x.clone()
    moved[..., 1] += 5.0
    assert not torch.allclose(model(moved), model(x))


class Echo(SequenceModel):
    """Returns the teacher-forced target it was given (what the network saw as the truth)."""

    def forward(self, x, future=None, target=None, mask=None):
        return target.unsqueeze(-1)


def test_teacher_forcing_sees_the_truth_in_the_inputs_units_and_comes_back_unchanged():
    model = InstanceNorm(Echo(3, 1, 4), [0, 2], target=2, to_label=TO_LABEL)
    x, truth = torch.randn(5, 10, 3) * 4 + 9, torch.randn(5, 4)
    torch.testing.assert_close(model(x, target=truth), truth.unsqueeze(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "tcn", "seq2seq_attention", "informer"])
def test_padded_rows_change_neither_the_statistics_nor_the_output(name):
    model = wrapped(name, steps=2)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[0, :5], mask[1, :9] = False, False
    x = torch.randn(3, 12, 3) * mask.unsqueeze(-1)
    out = model(x, mask=mask)
    garbage = x + torch.randn_like(x) * 100 * (~mask).unsqueeze(-1)
    torch.testing.assert_close(model(garbage, mask=mask), out)
    assert torch.isfinite(out).all()


def test_without_a_target_outputs_are_the_models_own():
    """Classification (or a move label): inputs normalised, outputs untouched."""
    torch.manual_seed(0)
    inner = build_model("lstm", SMALL["lstm"], 3, 2, 1, 0)
    model = InstanceNorm(inner, [0, 2]).eval()
    x = torch.randn(4, 12, 3)
    scaled = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
    scaled[..., 1] = x[..., 1]
    torch.testing.assert_close(model(x), inner(scaled), rtol=1e-5, atol=1e-5)


def test_a_flat_window_gives_finite_outputs():
    model = wrapped("tcn")
    x = torch.ones(2, 12, 3) * 5.0
    assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("task, chosen, expected", [
    ("regression", "auto", "revin"),  # the target's level is forecast from its own history
    ("classification", "auto", None),
    ("classification", "revin", "revin"),
    ("regression", "none", None),
])
def test_auto_turns_it_on_where_the_forecast_is_of_the_targets_level(run_cli, task, chosen, expected):
    from tests.conftest import TINY

    result = run_cli(*TINY, f"task={task}", f"instance_norm={chosen}")
    assert result.code == 0, result.err
    model = json.loads((result.run_dir / "metrics.json").read_text())["model"]
    assert model.get("instance_norm") == expected


def test_a_bad_setting_is_one_line(run_cli):
    from tests.conftest import TINY

    result = run_cli(*TINY, "instance_norm=window")
    assert result.code == 2 and "instance_norm: 'window'; choose auto, revin or none" in result.err


def test_calendar_and_known_future_columns_keep_their_values():
    """Their meaning is their absolute value (the hour, a scheduled event): only the other
    features and the target's history are scaled per window, and the output is mapped back with
    the target's statistics only for a forecast of its value."""
    from types import SimpleNamespace

    from seqtrain.data.scaling import StandardScaler
    from seqtrain.engine.assemble import with_instance_norm

    inputs = ["ret", "rsi", "hour_sin", "hour_cos", "close"]
    state = SimpleNamespace(
        features=["ret", "rsi"], known_future=["rsi", "hour_sin", "hour_cos"], inputs=inputs,
        target_history=True, task="regression", label="value",
        scaler=StandardScaler.fit(torch.randn(50, 5).numpy()), target_scaler=StandardScaler.fit(
            torch.randn(50).numpy()))
    model = with_instance_norm(build_model("lstm", SMALL["lstm"], 5, 1, 1, 3), state, "auto")
    assert model.chosen.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0] and model.target == 4
    direction = with_instance_norm(build_model("lstm", SMALL["lstm"], 5, 3, 1, 3),
                                   SimpleNamespace(**{**vars(state), "task": "classification",
                                                      "label": "direction"}), "revin")
    assert direction.chosen.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0] and direction.target is None
