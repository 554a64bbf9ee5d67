"""What pruning saves a search, and what it costs it: one Optuna study run without pruning and
with each rule (``hparams_search.pruner``), through the real CLI.

    python benchmarks/pruning.py [--trials 16] [--epochs 8] [--pruner none median halving]

The same 16-trial TPE study (seeded) on the built-in demo table (LSTM, classification of the next
move), the learning rate searched over a wide range (1e-5 .. 3e-2, so that some trials barely
learn in the epochs they have) beside the batch size, weight decay and dropout (a one-layer
LSTM of width 32, windows of 32 rows). For each rule:
the study's wall time (the command's, Hydra's and Optuna's start included) and the trials' own
(the sum of their runs' wall times), the epochs trained in all, the trials pruned, and the best
validation loss found (the sweep's ★ job) with that job's test accuracy. Tiny on purpose (a few minutes on
two cores); with more epochs per trial pruning saves a larger share.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def command(folder: Path, args, pruner: str) -> list[str]:
    return ["seqtrain", "-m", "hparams_search=optuna", f"hydra.sweeper.n_trials={args.trials}",
            f"hparams_search.pruner={pruner}", f"hparams_search.warmup_epochs={args.warmup}",
            f"hparams_search.min_trials={args.min_trials}", "optim.lr=tag(log, interval(1e-5, 3e-2))",
            "data.seq_length=32", "model.hidden_size=32", "model.num_layers=1",
            f"data.generator.length={args.length}", f"trainer.max_epochs={args.epochs}",
            *([f"trainer.limit_train_batches={args.batches}"] if args.batches else []),
            "early_stopping.patience=null", "progress_bar=false", "plots=false", f"hydra.sweep.dir={folder}"]


def measure(folder: Path) -> dict:
    summary = pd.read_csv(folder / "summary.csv")
    best = summary.loc[summary["rank"] == 1].iloc[0]
    epochs = [json.loads((folder / str(job) / "metrics.json").read_text())["epochs"]
              for job in summary["job"]]
    pruned = int(summary["pruned_epoch"].notna().sum()) if "pruned_epoch" in summary else 0
    return {"best_val": float(best["best_val"]), "best_job": int(best["job"]),
            "test_acc": float(best["test_acc"]), "epochs": sum(epochs), "pruned": pruned,
            "trials_s": round(float(summary["wall_time_s"].sum()), 1)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pruner", nargs="+", default=["none", "median", "halving"])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batches", type=int, default=0, help="training batches per epoch (0: all)")
    parser.add_argument("--length", type=int, default=1000, help="rows per demo series")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-trials", type=int, default=4)
    parser.add_argument("--keep", help="folder for the sweeps (default: a temporary one)")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.keep or scratch)
        for pruner in args.pruner:
            line = command(root / pruner, args, pruner)
            print("$ " + shlex.join(line[:-1]), flush=True)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "seqtrain.cli", *line[1:]], capture_output=True,
                                  text=True)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"{pruner}: the search failed ({done.returncode}):\n{done.stderr[-3000:]}")
            results[pruner] = {"wall_s": round(wall, 1), **measure(root / pruner)}
            print(json.dumps({pruner: results[pruner]}), flush=True)
    print("\n| pruner | wall time | trials' own time | epochs trained | trials pruned | best val_loss (job) "
          "| its test acc |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for pruner, r in results.items():
        print(f"| {pruner} | {r['wall_s']:.0f} s | {r['trials_s']:.0f} s | {r['epochs']} | "
              f"{r['pruned']} of {args.trials} | {r['best_val']:.4f} ({r['best_job']}) | "
              f"{r['test_acc']:.3f} |")
    return results


if __name__ == "__main__":
    main()
