"""Whole-sequence classification (``data=cases``): every model at its defaults beside the
1-nearest-neighbour (Euclidean) and majority baselines, with 95% intervals over test cases.

    python benchmarks/cases.py                          # the built-in generated case table
    python benchmarks/cases.py --sets JapaneseVowels    # archive sets written by benchmarks/uea.py
    python benchmarks/cases.py --models inception_time tcn --seeds 0 1 2 --overrides trainer.max_epochs=20

An archive set is read from ``benchmarks/.cache/uea/<Name>.parquet`` (``benchmarks/uea.py`` writes
it from a package that ships the archive), with the archive's own train/test split; validation is
carved from its training cases. Each row: the test accuracy (mean over ``--seeds`` when several,
with the first seed's interval), macro F1, the baselines on the same test cases, and the wall
time of training, testing and reporting.
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
from seqtrain.models.registry import MODELS

CACHE = Path(__file__).parent / ".cache" / "uea"


def data_overrides(name: str) -> list[str]:
    if name == "generated":
        return ["data=cases"]
    table = CACHE / f"{name}.parquet"
    if not table.exists():
        raise SystemExit(f"{table} not found: run  python benchmarks/uea.py  first")
    return ["data=cases", f"data.path={table}", "data.split.column=split"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["generated"])
    parser.add_argument("--models", nargs="+", default=sorted(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--overrides", nargs="*", default=[], help="added to every run")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; seeds {args.seeds}; overrides {args.overrides or 'none'}")
    print("| data | model | test acc | 95% interval | macro F1 | 1-NN acc | majority acc | beats the best "
          "baseline | wall (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.sets:
            for model in args.models:
                accuracies, walls, first = [], [], None
                for seed in args.seeds:
                    started = time.perf_counter()
                    with contextlib.redirect_stdout(io.StringIO()):
                        run = seqtrain.train([f"model={model}", *data_overrides(name), f"seed={seed}",
                                              "progress_bar=false", "plots=false", *args.overrides],
                                             run_dir=Path(folder) / f"{name}_{model}_{seed}")
                    walls.append(time.perf_counter() - started)
                    accuracies.append(run.metrics["test"]["test_acc"])
                    first = first or run.metrics
                skill, baselines = first["skill"], first["baseline_test"]
                low, high = skill["interval"]
                beats = "yes" if skill["beats_best_baseline"] else "no"
                nearest = baselines.get("nearest_neighbour_acc", float("nan"))
                majority = baselines["majority_acc"]
                print(f"| {name} | {model} | {np.mean(accuracies):.3f} | {low:.3f} – {high:.3f} | "
                      f"{first['per_class']['macro_f1']:.3f} | {nearest:.3f} | {majority:.3f} | "
                      f"{beats} ({skill['best_baseline']}) | {np.mean(walls):.0f} |", flush=True)


if __name__ == "__main__":
    main()
