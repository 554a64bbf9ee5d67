"""Optimizers and schedules: what is decayed, and the shape of each learning-rate curve."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from seqtrain import cli
from seqtrain.config import PRECISIONS
from seqtrain.engine.optim import build_optimizer, build_scheduler, parameter_groups
from seqtrain.engine.precision import resolve_precision
from seqtrain.errors import SeqtrainError
from seqtrain.models.registry import build_model
from tests.conftest import TINY, TINY_RUN


def lr_curve(cfg, steps=100, lr=0.1):
    model = nn.Linear(2, 1)
    optimizer = build_optimizer(model, {"name": "adam", "lr": lr})
    schedule = build_scheduler(optimizer, cfg, lr, steps, "val_loss", "min")["scheduler"]
    curve = []
    for _ in range(steps):
        curve.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return np.array(curve)


def test_weight_decay_spares_biases_and_norms():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Conv1d(4, 4, 3))
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2, 3}
    assert all(p.ndim == 1 for p in no_decay["params"]) and len(no_decay["params"]) == 4


def test_weight_decay_spares_weight_norm_gains():
    tcn = build_model("tcn", {"num_channels": [4, 4]}, 3, 2)
    decay, no_decay = parameter_groups(tcn, 0.1)
    spared = {id(p) for p in no_decay["params"]}
    gains = [p for name, p in tcn.named_parameters() if name.endswith("weight.original0")]
    directions = [p for name, p in tcn.named_parameters() if name.endswith("weight.original1")]
    assert len(gains) == 4 and all(id(p) in spared for p in gains)
    assert all(id(p) not in spared for p in directions)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizers(name):
    optimizer = build_optimizer(nn.Linear(2, 2), {"name": name, "lr": 0.01, "weight_decay": 0.1,
                                                  "momentum": 0.9, "nesterov": True})
    assert optimizer.param_groups[0]["lr"] == 0.01
    if name == "sgd":
        assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.9
    with pytest.raises(SeqtrainError, match="optim.name"):
        build_optimizer(nn.Linear(2, 2), {"name": "lion", "lr": 0.01})


def test_cosine_warms_up_then_anneals_to_eta_min():
    curve = lr_curve({"name": "cosine", "warmup_pct": 0.1, "eta_min": 0.001})
    assert (np.diff(curve[:10]) > 0).all() and curve[9] == pytest.approx(0.1)
    assert (np.diff(curve[10:]) <= 1e-12).all() and curve[-1] == pytest.approx(0.001, abs=1e-4)


def test_onecycle_peaks_at_pct_start():
    curve = lr_curve({"name": "onecycle", "pct_start": 0.3})
    assert abs(int(curve.argmax()) - 30) <= 1 and curve.max() == pytest.approx(0.1, rel=1e-3)
    assert curve[-1] < 0.01 and curve[0] < 0.01


def test_plateau_halves_the_rate_after_patience_validations_without_progress():
    model = nn.Linear(2, 1)
    optimizer = build_optimizer(model, {"name": "adam", "lr": 0.1})
    config = build_scheduler(optimizer, {"name": "plateau", "factor": 0.5, "patience": 2}, 0.1,
                             float("inf"), "val_loss", "min")
    assert config["interval"] == "epoch" and config["monitor"] == "val_loss"
    rates = []
    for _ in range(5):
        config["scheduler"].step(1.0)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == [0.1, 0.1, 0.1, 0.05, 0.05]


def test_schedules_that_need_a_length_refuse_an_endless_run():
    optimizer = build_optimizer(nn.Linear(2, 1), {"name": "adam", "lr": 0.1})
    with pytest.raises(SeqtrainError, match="needs a finite run"):
        build_scheduler(optimizer, {"name": "onecycle"}, 0.1, float("inf"), "val_loss", "min")


@pytest.mark.parametrize("scheduler", ["plateau", "cosine", "none"])
def test_cli_logs_the_learning_rate_every_step(run_cli, scheduler):
    result = run_cli(f"scheduler={scheduler}", "optim=sgd", *TINY)
    assert result.code == 0, result.err
    steps = pd.read_csv(result.run_dir / "steps.csv")
    assert steps["step"].tolist() == list(range(1, len(steps) + 1))
    assert len(steps) == result.metrics()["steps"] and steps["lr"].gt(0).all()
    if scheduler == "none":
        assert steps["lr"].nunique() == 1


def test_same_command_twice_gives_identical_results(run_cli):
    first, second = run_cli(*TINY, "data.num_workers=0"), run_cli(*TINY, "data.num_workers=0")
    assert first.code == second.code == 0
    assert first.metrics()["test"] == second.metrics()["test"]
    a = pd.read_parquet(first.run_dir / "predictions.parquet")
    b = pd.read_parquet(second.run_dir / "predictions.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert torch.equal(torch.tensor(pd.read_csv(first.run_dir / "steps.csv")["loss"].to_numpy()),
                       torch.tensor(pd.read_csv(second.run_dir / "steps.csv")["loss"].to_numpy()))


def test_a_loss_that_turns_nan_stops_the_run_with_the_last_good_weights(run_cli):
    # instance_norm=none: window-scaled outputs stay bounded longer than a diverging net should take
    result = run_cli("task=regression", "optim=sgd", "optim.lr=1e12", "trainer.gradient_clip_val=null",
                     "instance_norm=none", *TINY)
    assert result.code == 2
    message = " ".join(result.err.split())
    assert "loss became" in message and "at step" in message and "optim.lr" in message
    assert "Traceback" not in result.err + result.out
    state = torch.load(result.run_dir / "checkpoints" / "last_good.ckpt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_gradient_norm_is_logged(run_cli):
    result = run_cli(*TINY)
    assert result.code == 0, result.err
    assert pd.read_csv(result.run_dir / "metrics.csv")["grad_norm"].gt(0).all()


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("requested,with_bf16,without", [
    ("32", "32-true", "32-true"), ("64", "64-true", "64-true"), ("bf16", "bf16-mixed", "32-true"),
    ("bf16-mixed", "bf16-mixed", "32-true"), ("16", "bf16-mixed", "32-true"),
    ("16-mixed", "bf16-mixed", "32-true")])
def test_cpu_precision_follows_the_cpu_capability(monkeypatch, native, requested, with_bf16, without):
    monkeypatch.setenv("SEQTRAIN_CPU_BF16", "1" if native else "0")
    used, note = resolve_precision(requested, on_gpu=False)
    assert used == (with_bf16 if native else without)
    assert (note is None) == (used == PRECISIONS[requested])


@pytest.mark.parametrize("has_bf16,used", [(True, "bf16-mixed"), (False, "16-mixed")])
def test_gpu_bf16_falls_back_to_fp16_where_the_gpu_has_no_bf16(monkeypatch, has_bf16, used):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: has_bf16)
    precision, note = resolve_precision("bf16", on_gpu=True)
    assert precision == used and (note is None) == has_bf16
    assert resolve_precision("16", on_gpu=True) == ("16-mixed", None)  # fp16 with a loss scaler


def test_precision_spelling_reaches_the_trainer(run_cli, monkeypatch):
    monkeypatch.setenv("SEQTRAIN_CPU_BF16", "1")
    result = run_cli("trainer.precision=bf16", "model=tcn", "model.num_channels=[8,8]", *TINY_RUN)
    assert result.code == 0, result.err
    assert result.metrics()["precision"] == "bf16-mixed"


NOISE = ["data=parquet", "data.target=up", "data.horizon=0", "data.features=[rsi]", "data.group_col=symbol",
         "task=classification", "progress_bar=false", "plots=false", "model.hidden_size=16",
         "trainer.max_epochs=8",
         "early_stopping.patience=1", "data.embargo=1"]


def test_early_stopping_waits_for_the_warm_up(run_cli, bars):
    """On unlearnable labels the validation loss wanders from the first epoch; under onecycle
    with pct_start 0.5 the rate peaks after 4 of 8 epochs, and patience (1) counts from there:
    at least 4 + 1 epochs run, whatever the losses (so on any CPU)."""
    result = run_cli(*NOISE, f"data.path={bars}", "scheduler=onecycle", "scheduler.pct_start=0.5")
    assert result.code == 0, result.err
    assert result.metrics()["epochs"] >= 5


def test_learning_rate_finder_picks_the_rate_and_draws_its_curve(run_cli):
    result = run_cli("optim.lr=find", *TINY, "plots=true")
    assert result.code == 0, result.err
    found = result.metrics()["lr_find"]
    assert 0 < found["lr"] < 1 and found["tried"] > 10
    assert (result.run_dir / "plots" / "lr_find.png").stat().st_size > 0
    first_step_lr = pd.read_csv(result.run_dir / "steps.csv")["lr"].iloc[0]
    assert first_step_lr == pytest.approx(found["lr"] / 25)  # onecycle starts at max_lr / 25
    (result.run_dir / "metrics.json").unlink()  # as if killed before the end: resume keeps the rate
    cli.resume(str(result.run_dir), ["trainer.max_epochs=3"])
    assert json.loads((result.run_dir / "metrics.json").read_text())["lr_find"] == found


@pytest.mark.parametrize("clip", [0.05, 1e6])  # clipped, and left alone
def test_clipping_reuses_the_guards_norm_and_clips_as_lightning_does(tmp_path, clip):
    """The NaN guard measures the gradient norm over the optimizer's parameters; clipping by
    norm then uses that number instead of measuring again: the same gradients, bit for bit, as
    clip_grad_norm_ (Lightning's clipping), and the norm logged is the norm clipping saw."""
    from types import SimpleNamespace

    from seqtrain.engine.callbacks import NonFiniteGuard
    from seqtrain.engine.module import SeqModule

    torch.manual_seed(0)
    model = build_model("tcn", {"num_channels": [8, 8], "kernel_size": 3, "dropout": 0.1}, 4, 2, 1, 0)
    module = SeqModule(model, "classification", {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
                       {"name": "none"}, n_classes=2)
    optimizer = build_optimizer(model, {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01})
    x, y = torch.randn(16, 12, 4), torch.randint(0, 2, (16,))
    torch.nn.functional.cross_entropy(model(x)[:, 0], y).backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert [id(p) for p in params] != [id(p) for p in model.parameters()]  # not the module's order
    copies = [nn.Parameter(p.detach().clone()) for p in params]
    for p, copy in zip(params, copies, strict=True):
        copy.grad = p.grad.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_(copies, clip)  # what Lightning's clipping does

    trainer = SimpleNamespace(world_size=1, loggers=[], global_step=0, log_every_n_steps=50,
                              fast_dev_run=False, should_stop=False, current_epoch=0)
    module.last_of_epoch = False
    guard = NonFiniteGuard(tmp_path / "last_good.ckpt")
    guard.on_before_optimizer_step(trainer, module, optimizer)
    assert torch.equal(module.step_grad_norm, expected_norm)
    module.configure_gradient_clipping(optimizer, clip, "norm")
    assert module.step_grad_norm is None  # used once
    for p, copy in zip(params, copies, strict=True):
        assert torch.equal(p.grad, copy.grad)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizers_step_with_foreach_and_the_same_arithmetic_as_the_per_parameter_loop(name):
    """seqtrain's optimizers run torch's foreach implementation on every device (faster on a CPU,
    where torch would loop in Python); the weights they reach are those of the per-parameter loop
    to the last bit, so the choice changes speed only."""
    torch.manual_seed(0)
    first = build_model("tcn", {"num_channels": [8, 8], "kernel_size": 3, "dropout": 0.0}, 4, 2, 1, 0)
    second = build_model("tcn", {"num_channels": [8, 8], "kernel_size": 3, "dropout": 0.0}, 4, 2, 1, 0)
    second.load_state_dict(first.state_dict())
    settings = {"name": name, "lr": 0.01, "weight_decay": 0.01}
    ours = build_optimizer(first, settings)
    assert all(group["foreach"] for group in ours.param_groups)
    loop = type(ours)(parameter_groups(second, 0.01), lr=0.01, foreach=False,
                      **({"momentum": 0.9} if name == "sgd" else {}))
    x, y = torch.randn(32, 12, 4), torch.randint(0, 2, (32,))
    for _ in range(5):
        for model, optimizer in ((first, ours), (second, loop)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x)[:, 0], y).backward()
            optimizer.step()
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
