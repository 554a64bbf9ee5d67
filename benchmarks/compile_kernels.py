"""Where a compiled TCN's training step goes on a CPU: the profile behind compile_speed.py's figure.

    python benchmarks/compile_kernels.py [--steps 30]

First table: the default TCN (32 channels, kernel 3, levels to cover the window; dropout 0.1
and 0) on random inputs of batch 128, window 50, 16 columns, eager and compiled
(``nn.Module.compile``, default mode): ms per forward pass and per forward and backward pass,
and the torch profiler's split of a forward and backward pass between oneDNN's convolutions
(forward and backward, which inductor calls as they are), inductor's generated code, and the
rest (autograd, the head, the loss).

Second table: the mechanism, in isolation. A ReLU on one 128 x 32 x 50 activation that also
returns the mask its backward needs (what AOTAutograd saves for a ReLU: one byte an element),
eager and compiled, with the mask written as bool, uint8 or float32, and with inductor's code
for the CPU's widest vectors and for 256-bit vectors. Last, eager dropout's cost on the same
activation: ``F.dropout`` (torch's ``bernoulli_``) against drawing as many uniform numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time

import torch
import torch._inductor.config as inductor_config
import torch.nn.functional as F
from torch.profiler import profile

from seqtrain.cli import _quiet_libraries
from seqtrain.engine.allocator import settle_malloc
from seqtrain.models.tcn import TCN

BATCH, WINDOW, INPUTS = 128, 50, 16


def per_call_ms(calls: int, fn, *args) -> float:
    for _ in range(5):
        fn(*args)
    start = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter() - start) / calls * 1e3


@contextlib.contextmanager
def quiet_stderr():
    """The profiler's C++ side prints its start and stop on file descriptor 2."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def step_split(calls: int, fn, *args) -> tuple[float, float, float]:
    """ms per call in oneDNN convolutions, in inductor's generated code, and elsewhere."""
    with quiet_stderr(), profile() as prof:
        for _ in range(calls):
            fn(*args)
    conv = generated = total = 0.0
    for event in prof.key_averages():
        total += event.self_cpu_time_total
        if "convolution" in event.key:
            conv += event.self_cpu_time_total
        elif event.key.startswith(("## Call CompiledFxGraph", "graph_", "cpp_fused")):
            generated += event.self_cpu_time_total
    return tuple(us / calls / 1e3 for us in (conv, generated, total - conv - generated))


def train_pass(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    F.cross_entropy(model(x)[:, 0], y).backward()


def tcn_table(steps: int) -> None:
    x, y = torch.randn(BATCH, WINDOW, INPUTS), torch.randint(0, 2, (BATCH,))
    print("| dropout | network | forward ms | forward + backward ms | convolutions ms | generated code ms "
          "| rest ms |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for dropout in (0.1, 0.0):
        for compiled in (False, True):
            torch.manual_seed(0)
            model = TCN(INPUTS, 2, dropout=dropout, seq_length=WINDOW).train()
            if compiled:
                model.compile()
            figures = (per_call_ms(steps, model, x), per_call_ms(steps, train_pass, model, x, y),
                       *step_split(steps, train_pass, model, x, y))
            name = "compiled" if compiled else "eager"
            print(f"| {dropout} | {name} | " + " | ".join(f"{ms:.1f}" for ms in figures) + " |", flush=True)
            torch._dynamo.reset()


def relu_with_mask(kind: torch.dtype):
    def fn(a: torch.Tensor):
        out = torch.relu(a)
        return out, (out <= 0).to(kind)
    return fn


def mask_table(steps: int) -> None:
    a = torch.randn(BATCH, 32, WINDOW)
    print("\n| mask dtype | eager us | compiled us | compiled, 256-bit vectors us |")
    print("|---|---:|---:|---:|")
    for kind in (torch.bool, torch.uint8, torch.float32):
        fn = relu_with_mask(kind)
        row = [per_call_ms(steps * 10, fn, a) * 1e3]
        for simdlen in (None, 256):
            with inductor_config.patch({"cpp.simdlen": simdlen}):  # put back even when it fails
                row.append(per_call_ms(steps * 10, torch.compile(fn), a) * 1e3)
            torch._dynamo.reset()
        name = str(kind).removeprefix("torch.")
        print(f"| {name} | " + " | ".join(f"{us:,.0f}" for us in row) + " |", flush=True)


def dropout_table(steps: int) -> None:
    a = torch.randn(BATCH, 32, WINDOW)
    print("\n| eager, one 128 x 32 x 50 activation | us |")
    print("|---|---:|")
    print(f"| F.dropout(p=0.1), training | {per_call_ms(steps * 10, F.dropout, a, 0.1, True) * 1e3:,.0f} |")
    print(f"| torch.rand_like | {per_call_ms(steps * 10, torch.rand_like, a) * 1e3:,.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    _quiet_libraries()
    settle_malloc()  # as seqtrain's training does
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, inductor's vectors: {torch._inductor.cpu_vec_isa.pick_vec_isa()}\n")
    for table in (tcn_table, mask_table):
        try:
            table(args.steps)
        except Exception as exc:  # the compiler's errors have no common type (e.g. no C++ compiler)
            print(f"\ntorch.compile does not run here: {str(exc).strip().splitlines()[0][:120]}")
            break
    dropout_table(args.steps)


if __name__ == "__main__":
    main()
