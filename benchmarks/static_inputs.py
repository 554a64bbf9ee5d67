"""A global model over many series, with and without knowing which series it looks at.

    python benchmarks/static_inputs.py [--models lstm tcn] [--seeds 0 1 2] [--series 8]

The built-in load table with ``--series`` series (each its own two-peak daily profile) and its
static columns (``peak``: the evening peak's hour; ``region``: early or late morning peak);
windows of 12 hours forecasting the hour 12 hours ahead, calendar columns on. A 12-hour window
holds half a daily cycle, so which series it is decides where the next peak falls. Four ways per
model: nothing of the series, ``model.series_embedding=8``, ``data.static=[peak,region]``, both.
Each row: test MAE and RMSE (mean over seeds; the first seed's 95% block-bootstrap interval of
the MAE), the best baseline's MAE beside it (of persistence, the training mean, a linear model
of the last row), the wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import seqtrain

DATA = ["data.generator.name=load", "data.generator.static=true", "task=regression",
        "data.seq_length=12", "data.horizon=12", "data.time_features=true", "data.features=[direction]"]
WAYS = {
    "none": [],
    "series embedding 8": ["model.series_embedding=8"],
    "static peak, region": ["data.static=[peak,region]"],
    "both": ["model.series_embedding=8", "data.static=[peak,region]"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lstm", "tcn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--series", type=int, default=8)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {args.series} series; seeds {args.seeds}")
    print("| model | the model knows | test MAE | 95% interval | test RMSE | best baseline MAE | wall (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            for way, overrides in WAYS.items():
                maes, rmses, walls, first = [], [], [], None
                for seed in args.seeds:
                    started = time.perf_counter()
                    with contextlib.redirect_stdout(io.StringIO()):
                        run = seqtrain.train(
                            [f"model={model}", *DATA, f"data.generator.n_series={args.series}",
                             f"seed={seed}", "progress_bar=false", "plots=false", *overrides],
                            run_dir=Path(folder) / f"{model}_{way.replace(' ', '_')}_{seed}")
                    walls.append(time.perf_counter() - started)
                    maes.append(run.metrics["test"]["test_mae"])
                    rmses.append(run.metrics["test"]["test_rmse"])
                    first = first or run.metrics
                skill = first["skill"]
                low, high = skill["interval"]
                best = skill["best_baseline"]
                print(f"| {model} | {way} | {np.mean(maes):.2f} | {low:.2f} – {high:.2f} | "
                      f"{np.mean(rmses):.2f} | {best} {first['baseline_test'][f'{best}_mae']:.2f} | "
                      f"{np.mean(walls):.0f} |", flush=True)


if __name__ == "__main__":
    main()
