"""Forecast quality: every model, walk-forward, beside the naive baselines, with intervals.

    python benchmarks/forecast_quality.py [--models lstm tcn ...] [--folds 3] [--epochs 6]
    python benchmarks/forecast_quality.py --table bars.parquet --target close --group symbol \
        --overrides data.label=direction data.horizon=4 data.dead_zone=q0.33 task=classification

Without ``--table``: the built-in data, three times — the demo's next move (classification),
the demo's next three values (regression, with the seasonal-naive baseline at its 24-row cycle)
and a day-ahead forecast of the load demo (``data.generator.name=load``: a week of hourly history,
the next 24 hours, calendar features, beside yesterday's values); ``--data`` picks some.
Each run is ``seqtrain eval=walk_forward`` at the model's defaults but for ``--epochs``; the
table gives the pooled out-of-sample metric with its 95% block-bootstrap interval, the best
baseline on the same windows, the skill against it and whether the model beats it beyond the
interval. A change that makes the models learn worse shows up here as clearly as a slowdown in
the throughput benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import tempfile
import time
from pathlib import Path

import torch

import seqtrain
from seqtrain.models.registry import MODELS

BUILT_IN = {
    "demo-classification": ["task=classification"],
    "demo-regression": ["task=regression", "data.output_steps=3", "eval.season=24"],
    # day-ahead: a week of hourly history, the next 24 hours, beside yesterday's values
    "load-day-ahead": ["task=regression", "data.generator.name=load", "data.seq_length=168",
                       "data.output_steps=24", "data.time_features=true", "eval.season=24"],
}


def tasks(args) -> list[tuple[str, list[str]]]:
    if args.table:
        table = ["data=parquet", f"data.path={args.table}", f"data.target={args.target}",
                 f"data.group_col={args.group or 'null'}"]
        return [("table", [*table, *args.overrides])]
    return [(name, [*BUILT_IN[name], *args.overrides]) for name in args.data]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=sorted(MODELS))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--test-size", type=float, default=0.08)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--table")
    parser.add_argument("--target")
    parser.add_argument("--group")
    parser.add_argument("--data", nargs="+", default=list(BUILT_IN), choices=list(BUILT_IN),
                        help="built-in tasks to run (without --table)")
    parser.add_argument("--overrides", nargs="*", default=[], help="added to every run")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; walk-forward {args.folds} folds x test_size {args.test_size}, "
          f"{args.epochs} epochs max")
    print("| data | model | pooled metric | 95% interval | best baseline | skill | beats it | wall (s) |")
    print("|---|---|---:|---:|---|---:|---|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name, overrides in tasks(args):
            for model in args.models:
                started = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    run = seqtrain.train([f"model={model}", *overrides, "eval=walk_forward",
                                          f"eval.folds={args.folds}", f"eval.test_size={args.test_size}",
                                          f"trainer.max_epochs={args.epochs}", "progress_bar=false"],
                                         run_dir=Path(folder) / f"{name.replace(' ', '_')}_{model}")
                pooled = run.metrics["pooled"]
                low, high = pooled["interval"]
                best = pooled["best_baseline"]
                metric = f"{pooled['metric'].removeprefix('test_')} {pooled['value']:.3f}"
                baseline = f"{best} {pooled['baselines'][best]:.3f}"
                beats = "yes" if pooled["beats_best_baseline"] else "no"
                wall = time.perf_counter() - started
                print(f"| {name} | {model} | {metric} | {low:.3f} – {high:.3f} | {baseline} | "
                      f"{pooled['skill']:.2f} | {beats} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
