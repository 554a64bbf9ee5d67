"""Training throughput with glibc's malloc as seqtrain settles it, against glibc's defaults.

    python benchmarks/allocator.py [--models lstm tcn gru seq2seq_attention] [--epochs 3] [--repeats 3]

Each figure comes from a fresh process, since glibc's adaptive mmap threshold remembers what the
process freed before: the bare loop of train_throughput.py (with its page faults per step) and
seqtrain's own ``train_samples_per_s``, each once with ``SEQTRAIN_MALLOC=0`` (glibc's defaults)
and once settled (seqtrain.engine.allocator), alternately, ``--repeats`` times; figures are medians,
speed-ups the median of each round's ratio (a shared machine drifts more between rounds).
Only the allocator differs: the same seeds give the same weights, losses and metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

import torch
from train_throughput import bare_run, config

from seqtrain.cli import _quiet_libraries
from seqtrain.engine.allocator import ENV, settle_malloc
from seqtrain.run.train import train


def measure(loop: str, model: str, epochs: int) -> dict:
    """One loop in this process: samples/s (and, for the bare loop, page faults per step)."""
    _quiet_libraries()
    malloc = settle_malloc()  # seqtrain's train() does this itself; the bare loop needs telling
    with tempfile.TemporaryDirectory() as folder:
        cfg = config(model, epochs, folder, ("progress_bar=false",))
        if loop == "bare":
            rate, faults = bare_run(cfg, epochs)
            return {"rate": rate, "faults": faults, "malloc": malloc}
        train(cfg, Path(folder, "run"), quiet=True)
        metrics = json.loads(Path(folder, "run", "metrics.json").read_text())
        return {"rate": metrics["train_samples_per_s"], "malloc": metrics["malloc"]}


def in_fresh_process(loop: str, model: str, epochs: int, settled: bool) -> dict:
    env = {**os.environ, ENV: "1" if settled else "0"}
    out = subprocess.run([sys.executable, __file__, "--one", loop, model, "--epochs", str(epochs)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lstm", "tcn", "gru", "seq2seq_attention"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("LOOP", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.epochs)))
        return
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, glibc {platform.libc_ver()[1]}\n")
    print("| model | bare, glibc defaults | faults/step | bare, settled | faults/step | speed-up "
          "| seqtrain, glibc defaults | seqtrain, settled | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models:
        runs = {(loop, settled): [] for loop in ("bare", "seqtrain") for settled in (False, True)}
        for _ in range(args.repeats):
            for (loop, settled), found in runs.items():
                found.append(in_fresh_process(loop, model, args.epochs, settled))
        rate = {key: median(r["rate"] for r in found) for key, found in runs.items()}
        faults = {s: median(r["faults"] for r in runs["bare", s]) for s in (False, True)}
        gain = {loop: median(t["rate"] / f["rate"]  # within each round, back to back
                             for f, t in zip(runs[loop, False], runs[loop, True], strict=True))
                for loop in ("bare", "seqtrain")}
        print(f"| {model} | {rate['bare', False]:,.0f} | {faults[False]:,.0f} | {rate['bare', True]:,.0f} "
              f"| {faults[True]:,.0f} | {gain['bare']:.2f}x | {rate['seqtrain', False]:,.0f} "
              f"| {rate['seqtrain', True]:,.0f} | {gain['seqtrain']:.2f}x |", flush=True)
    print(f"\nsettled: {runs['seqtrain', True][0]['malloc']}")


if __name__ == "__main__":
    main()
