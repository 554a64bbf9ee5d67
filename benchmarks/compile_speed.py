"""torch.compile against eager, per model: a bare training loop's samples/s, and compile time.

    python benchmarks/compile_speed.py [--epochs 3] [--models lstm tcn ...]

The bare loop of train_throughput.py (demo windows, batch 128, Adam, clipping at 1.0, CPU),
once eager and once with the network compiled as ``trainer.compile=true`` compiles it
(``nn.Module.compile``, default mode). The compiled loop first runs one untimed epoch, which
compiles (the full batch and then the smaller last batch); its time is the compile column.
A model that fails to compile is reported as such: seqtrain trains it eager.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch
import torch.nn.functional as F
from train_throughput import config, demo_model, demo_windows

from seqtrain.allocator import settle_malloc
from seqtrain.cli import _quiet_libraries

MODELS = ("lstm", "gru", "tcn", "informer", "cnn_lstm", "seq2seq_attention", "tft")


def loop(cfg, x, y, classes: int, epochs: int, compiled: bool) -> tuple[float, float]:
    """(samples/s over ``epochs`` timed epochs, seconds of the untimed compiling epoch)."""
    model = demo_model(cfg, x, classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    model.train()

    def epoch() -> None:
        for index in torch.randperm(len(x)).split(128):
            loss = F.cross_entropy(model(x[index])[:, 0], y[index])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

    warm = 0.0
    if compiled:
        model.compile()
        start = time.perf_counter()
        epoch()
        warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return epochs * len(x) / (time.perf_counter() - start), warm


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
            x, y, classes = demo_windows(cfg)
            eager, _ = loop(cfg, x, y, classes, args.epochs, compiled=False)
            try:
                fast, warm = loop(cfg, x, y, classes, args.epochs, compiled=True)
            except Exception as exc:  # the compiler's errors have no common type
                first = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else type(exc).__name__
                print(f"| {name} | {eager:,.0f} | fails: {first} | - | - |", flush=True)
                continue
            torch._dynamo.reset()
            print(f"| {name} | {eager:,.0f} | {fast:,.0f} | {fast / eager:.2f}x | {warm:.0f} |", flush=True)


if __name__ == "__main__":
    main()
