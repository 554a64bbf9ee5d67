"""MatchedDropout: torch's dropout outputs, gradients and random stream, on any CPU."""

import pandas as pd
import pytest
import torch
from torch import nn

from seqtrain.models import dropout
from seqtrain.models.dropout import MatchedDropout, draws_masks_element_wise, match_dropout
from seqtrain.models.registry import MODELS, build_model
from tests.conftest import TINY_MODELS, TINY_RUN

CASES = [  # shape, dtype, inplace, transposed (a non-contiguous input)
    ((128, 32, 50), torch.float32, False, False),
    ((7, 5), torch.float32, False, False),
    ((16, 9, 12), torch.float32, False, True),
    ((64, 33), torch.bfloat16, False, False),
    ((64, 33), torch.float32, True, False),
]


def _dropout_run(module: nn.Module, base: torch.Tensor, inplace: bool, seed: int = 3):
    """Output, input gradient (None in place) and the next draw of the global stream."""
    x = base.clone().requires_grad_(not inplace)
    torch.manual_seed(seed)
    out = module(x)
    grad = None
    if not inplace:
        (out.float() * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
        grad = x.grad
    return out.detach(), grad, torch.rand(4)


@pytest.mark.parametrize(("shape", "dtype", "inplace", "transposed"), CASES)
def test_matched_dropout_is_torch_dropout(shape, dtype, inplace, transposed):
    """On this CPU, whichever path it takes: the same output, gradient and random stream after."""
    base = torch.randn(*shape).to(dtype)
    if transposed:
        base = base.transpose(-1, -2)
    ours = _dropout_run(MatchedDropout(0.1, inplace), base, inplace)
    torchs = _dropout_run(nn.Dropout(0.1, inplace), base, inplace)
    for a, b in zip(ours, torchs, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize(("shape", "dtype", "inplace", "transposed"), CASES)
def test_the_element_wise_path_is_torch_element_wise_dropout(monkeypatch, shape, dtype, inplace, transposed):
    """Forced on (whatever this CPU does): torch's element-by-element dropout as written out,
    ``x * (uniform < keep) / keep`` from the global stream, kept in x's dtype."""
    monkeypatch.setattr(dropout, "draws_masks_element_wise", lambda: True)
    base = torch.randn(*shape).to(dtype)
    if transposed:
        base = base.transpose(-1, -2)
    out, grad, after = _dropout_run(MatchedDropout(0.25, inplace), base, inplace)
    torch.manual_seed(3)
    keep = torch.empty_like(base, dtype=torch.float64).uniform_() < 0.75
    noise = keep.to(dtype).div_(0.75)
    assert out.dtype == dtype and torch.equal(out, base * noise)
    assert torch.equal(after, torch.rand(4))
    if not inplace:
        weights = torch.arange(base.numel()).reshape(base.shape).to(dtype)  # d(sum)/d(out), in out's dtype
        assert torch.equal(grad, weights * noise)


def test_where_torch_draws_masks_otherwise_its_own_dropout_runs(monkeypatch):
    """The check finds a CPU whose bernoulli_ draws differently (as MKL's does on Intel CPUs), and
    then torch's own dropout runs."""
    draws_masks_element_wise.cache_clear()
    monkeypatch.setattr(torch.Tensor, "bernoulli_", lambda self, p, generator=None: self.fill_(1.0))
    try:
        assert not draws_masks_element_wise()
        base = torch.randn(32, 8)
        ours, torchs = (_dropout_run(m, base, False) for m in (MatchedDropout(0.5), nn.Dropout(0.5)))
        assert all(torch.equal(a, b) for a, b in zip(ours, torchs, strict=True))
    finally:
        monkeypatch.undo()
        draws_masks_element_wise.cache_clear()


def test_the_check_leaves_the_global_random_stream_alone():
    draws_masks_element_wise.cache_clear()
    state = torch.get_rng_state()
    draws_masks_element_wise()
    assert torch.equal(torch.get_rng_state(), state)


def test_evaluation_and_zero_dropout_pass_inputs_through(monkeypatch):
    monkeypatch.setattr(dropout, "draws_masks_element_wise", lambda: True)
    x = torch.randn(8, 4)
    state = torch.get_rng_state()
    assert torch.equal(MatchedDropout(0.3).eval()(x), x)
    assert torch.equal(MatchedDropout(0.0)(x), x)
    assert torch.equal(torch.get_rng_state(), state)  # no draw


def test_match_dropout_replaces_plain_dropout_only():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.2, inplace=True),
                          nn.Sequential(nn.Dropout(0.4), nn.Dropout1d(0.1)), nn.LSTM(3, 3, 2, dropout=0.3))
    keys = set(model.state_dict())
    match_dropout(model)
    assert type(model[1]) is MatchedDropout and model[1].p == 0.2 and model[1].inplace
    assert type(model[2][0]) is MatchedDropout and model[2][0].p == 0.4
    assert type(model[2][1]) is nn.Dropout1d and type(model[3]) is nn.LSTM
    assert set(model.state_dict()) == keys


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_is_built_with_matched_dropout(name):
    args = {"tft": {"hidden_size": 8, "hidden_continuous_size": 4, "attention_head_size": 2},
            "informer": {"d_model": 16, "d_ff": 32, "n_heads": 2, "label_len": 8}}.get(name, {})
    model = build_model(name, args, 4, 2, 1, 0, seq_length=16)
    assert not any(type(m) is nn.Dropout for m in model.modules())


def test_a_seeded_run_is_the_same_with_torchs_own_dropout(run_cli, monkeypatch):
    """A TCN run (dropout after every convolution) gives the same steps, metrics and predictions
    with MatchedDropout as with torch's dropout, on whichever CPU runs it."""
    tcn = [*TINY_RUN, *TINY_MODELS["tcn"], "model=tcn", "model.dropout=0.3"]
    ours = run_cli(*tcn)
    monkeypatch.setattr(MatchedDropout, "forward", nn.Dropout.forward)
    torchs = run_cli(*tcn)
    assert ours.code == torchs.code == 0
    assert ours.metrics()["test"] == torchs.metrics()["test"]
    for name in ("steps.csv", "metrics.csv"):
        tables = (pd.read_csv(r.run_dir / name).drop(columns="time", errors="ignore") for r in (ours, torchs))
        pd.testing.assert_frame_equal(*tables)
    pd.testing.assert_frame_equal(pd.read_parquet(ours.run_dir / "predictions.parquet"),
                                  pd.read_parquet(torchs.run_dir / "predictions.parquet"))
