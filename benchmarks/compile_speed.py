"""torch.compile against eager, per model: a bare training loop's samples/s, and compile time.

    python benchmarks/compile_speed.py [--epochs 3] [--models lstm tcn ...]

The bare loop of train_throughput.py (demo windows, batch 128, Adam, clipping at 1.0, CPU),
once eager and once with the network compiled as ``trainer.compile=true`` compiles it
(``nn.Module.compile``, default mode), both from the same seed. Each first runs one untimed
epoch (the compiled one's compiles, for the full batch and then the smaller last batch: its
time is the compile column); then ``--epochs`` eager and compiled epochs alternate, and the
speed-up is the median of each pair's ratio. A model that fails to compile is reported as
such: seqtrain trains it eager. glibc's malloc is settled as in seqtrain's training: before
it was, the LSTM's eager loop paid page faults its compiled loop partly avoided.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from statistics import median

import torch
import torch.nn.functional as F
from train_throughput import config, demo_data, demo_model

from seqtrain.cli import _quiet_libraries
from seqtrain.engine.allocator import settle_malloc

MODELS = ("lstm", "gru", "tcn", "informer", "cnn_lstm", "seq2seq_attention", "tft", "inception_time", "nhits",
          "patchtst")


def contest(cfg, data, x, y, epochs: int) -> tuple[float, float, float, float]:
    """Eager against compiled, epoch by epoch back to back (a shared machine drifts more than the
    difference over a run): (eager samples/s, compiled samples/s, median of the epochs' ratios,
    seconds of the compiled network's untimed first epoch, which compiles)."""
    loops = []
    for _ in range(2):  # eager, then the one to compile: the same seed, the same weights
        model = demo_model(cfg, data).train()
        loops.append((model, torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)))
    eager, compiled = loops
    compiled[0].compile()

    def epoch(model, optimizer) -> float:
        start = time.perf_counter()
        for index in torch.randperm(len(x)).split(128):
            loss = F.cross_entropy(model(x[index])[:, 0], y[index])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        return time.perf_counter() - start

    warm = epoch(*compiled)
    epoch(*eager)  # the eager loop's first epoch is not timed either
    pairs = [(epoch(*eager), epoch(*compiled)) for _ in range(epochs)]
    rate = [epochs * len(x) / sum(p[i] for p in pairs) for i in (0, 1)]
    return rate[0], rate[1], median(e / c for e, c in pairs), warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    _quiet_libraries()
    settle_malloc()  # as seqtrain's training does, for eager and compiled loops alike
    threads = torch.get_num_threads()
    print(f"machine: {platform.machine()}, {threads} torch threads, torch {torch.__version__}\n")
    print("| model | eager samples/s | compiled samples/s | speed-up | compile s |")
    print("|---|---:|---:|---:|---:|")
    for name in args.models:
        with tempfile.TemporaryDirectory() as folder:
            cfg = config(name, args.epochs, folder)
            data, x, y = demo_data(cfg)
            try:
                eager, fast, speedup, warm = contest(cfg, data, x, y, args.epochs)
            except Exception as exc:  # the compiler's errors have no common type
                first = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else type(exc).__name__
                print(f"| {name} | - | fails: {first} | - | - |", flush=True)
                continue
            torch._dynamo.reset()
            print(f"| {name} | {eager:,.0f} | {fast:,.0f} | {speedup:.2f}x | {warm:.0f} |", flush=True)


if __name__ == "__main__":
    main()
