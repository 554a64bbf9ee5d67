"""Does every model learn at its defaults? Test accuracy on a planted signal, beside chance.

    python benchmarks/planted_signal.py [--rows 6000] [--epochs 30]

The table (``seqtrain.data.synthetic.planted_signal_table``): the label at t+1 is the sign of
x1[t]·sign(x2[t-3]), among noise columns, so no single column helps and chance is 0.5. Every
model runs with its default size, optimizer, schedule and early stopping (seq_length 16); the
test suite runs the same check with 20 epochs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_module

from seqtrain.cli import _quiet_libraries
from seqtrain.data.synthetic import planted_signal_table
from seqtrain.models.registry import MODELS
from seqtrain.run.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    _quiet_libraries()
    print("| model | test accuracy | majority class | epochs run (best) | wall (s) |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "planted.parquet"
        planted_signal_table(args.rows).to_parquet(path, index=False)
        for model in MODELS:
            with initialize_config_module("seqtrain.conf", version_base="1.3"):
                cfg = compose("config", overrides=[
                    f"model={model}", "data=parquet", f"data.path={path}", "data.target=label",
                    "data.seq_length=16", "task=classification", f"trainer.max_epochs={args.epochs}",
                    "progress_bar=false"])
            run = Path(folder) / model
            started = time.perf_counter()
            train(cfg, run)
            metrics = json.loads((run / "metrics.json").read_text())
            print(f"| {model} | {metrics['test']['test_acc']:.3f} | "
                  f"{metrics['baseline_test']['majority_acc']:.3f} | {metrics['epochs']} "
                  f"({metrics['best_epoch']}) | {time.perf_counter() - started:.0f} |")


if __name__ == "__main__":
    main()
