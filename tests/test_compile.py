"""trainer.compile: torch.compile of the network gives the eager run's numbers, or runs eager."""

import numpy as np
import pandas as pd
import pytest
import torch

from seqtrain.engine.compiling import CPU_SPEEDUP, PAYS, worth_compiling
from seqtrain.models.registry import MODELS
from tests.conftest import TINY_RUN

# no dropout: compiled code draws its random masks differently, everything else must agree. One
# level: each level adds its own kernels to compile, a third of the test's time per level on a CPU.
TCN = [*TINY_RUN, "model=tcn", "model.num_channels=[8]", "model.dropout=0", "task=regression"]


def test_a_compiled_run_matches_the_eager_run(run_cli):
    eager = run_cli(*TCN)
    compiled = run_cli(*TCN, "trainer.compile=force")  # tcn pays on no CPU measured: forced
    assert eager.code == 0 and compiled.code == 0, compiled.err
    assert compiled.metrics()["compile"] == "compiled (default)" and eager.metrics()["compile"] is None
    losses = [pd.read_csv(r.run_dir / "steps.csv")["loss"].to_numpy() for r in (eager, compiled)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4, atol=1e-5)  # every training step
    for key, value in eager.metrics()["test"].items():
        assert abs(compiled.metrics()["test"][key] - value) <= 1e-4 * max(1.0, abs(value)), key
    # the checkpoint is the eager network's: predict and export read it as any other
    state = torch.load(compiled.run_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in state)


def test_a_network_that_does_not_compile_trains_eager_with_one_line(run_cli, monkeypatch):
    def broken_compile(self, *args, **kwargs):
        def fails(*a, **k):
            raise RuntimeError("backend says no\nmore detail")
        self._compiled_call_impl = fails

    monkeypatch.setattr(torch.nn.Module, "compile", broken_compile)
    result = run_cli(*TCN, "trainer.compile=force")
    assert result.code == 0, result.err
    assert result.metrics()["compile"] == "eager (backend says no)"
    assert "trainer.compile: tcn did not compile (backend says no); training eager" in \
        " ".join((result.out + result.err).split())


def test_compile_true_on_a_cpu_compiles_only_where_it_pays(run_cli, monkeypatch):
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: pytest.fail("compiled"))
    result = run_cli(*TCN, "trainer.compile=true")
    assert result.code == 0, result.err
    assert result.metrics()["compile"].startswith("eager (tcn trains faster eager on a CPU")
    text = " ".join((result.out + result.err).split())
    assert "training eager (trainer.compile=force compiles it anyway)" in text


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compile_true_compiles_on_a_cpu_only_the_models_measured_faster_and_every_one_on_a_gpu(name):
    """The README's "only nhits so far": each model has its measured CPU figure (a model without
    one would be compiled unmeasured); below what pays it trains eager; a GPU compiles them all."""
    assert name in CPU_SPEEDUP
    if name == "nhits":
        assert CPU_SPEEDUP[name] >= PAYS and worth_compiling(name, on_gpu=False) is None
    else:
        assert worth_compiling(name, on_gpu=False).startswith(f"{name} trains faster eager on a CPU")
    assert worth_compiling(name, on_gpu=True) is None


def test_an_unknown_compile_mode_is_one_line(run_cli):
    result = run_cli(*TCN, "trainer.compile=fastest")
    assert result.code == 2 and "trainer.compile: 'fastest'; choose false, true, force or a torch.compile " \
        "mode" in " ".join(result.err.split())


def test_inception_max_pool_over_padded_rows_compiles_and_matches_eager():
    """A padded row must lose every max without being minus infinity: inductor's max-pool
    backward fails on a pool window of only minus infinity (data.pad_short=true ran eager)."""
    from seqtrain.models.inception_time import InceptionModule

    torch.manual_seed(0)
    module = InceptionModule(2, 2, [3, 1, 1], bottleneck=0).train()
    real = torch.ones(2, 1, 6, dtype=torch.bool)
    real[0, :, :4] = False  # three padded rows side by side: a pool window of padding alone
    x = (torch.randn(2, 2, 6) * real).requires_grad_()
    eager = module(x, real)
    eager.sum().backward()
    grad, x.grad = x.grad.clone(), None
    compiled = torch.compile(module)(x, real)
    compiled.sum().backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(x.grad, grad)


def test_informer_distilling_over_padded_rows_compiles_and_matches_eager():
    """Informer's distilling max-pool, as InceptionTime's: a pool window of padded rows alone
    must not be minus infinity, or inductor's compiled backward fails (index out of bounds)."""
    from seqtrain.models.informer import DistilLayer

    torch.manual_seed(0)
    layer = DistilLayer(4).train()
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[0, :5] = False  # a stride-2 pool window of three padded rows
    x = (torch.randn(2, 8, 4) * mask.unsqueeze(-1)).requires_grad_()
    eager, _ = layer(x, mask)
    eager.sum().backward()
    grad, x.grad = x.grad.clone(), None
    compiled, _ = torch.compile(layer)(x, mask)
    compiled.sum().backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(x.grad, grad)
