"""Does a sweep's verdict tell a random walk from a real edge? Nested result, deflated Sharpe, PBO.

    python benchmarks/sweep_honesty.py [--length 2000] [--folds 3] [--epochs 4] [--case random_walk drift]

Two sweeps through the real CLI (``seqtrain -m``), the same grid of walk-forward jobs on the
bars demo (``data.generator.name=bars``, three symbols, the next bar's direction up/down,
``data.generator.derived=true``: the scale-free bar columns as inputs): once on a pure random
walk (``data.generator.informed=0``: nothing predicts the next move) and once with the demo's
planted drift (one bar in seven informed, four bars of drift after it). The grid crosses
``model.hidden_size``, ``optim.lr`` and ``seed``: rates from too low to learn in the few epochs
to high, so that with an edge the jobs differ in skill, and without one they differ by luck
only. From each sweep's ``summary.json``: the nested out-of-sample accuracy with its interval
beside chance and the baselines, the ★ job's deflated Sharpe ratio, PBO and the probability of
an out-of-sample loss.

Chance, precisely: on the nested test windows (each block's windows from the job chosen for
it), a model whose calls were independent of the labels, calling each class as often as the
nested model did, would score ``sum_c calls_c * labels_c`` in expectation; the table shows that,
the majority class's share of the labels there (what always calling that class scores, the most
any label-blind constant call gets) and 0.5.
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

CASES = {"random_walk": ["data.generator.informed=0"], "drift": []}


def sweep_command(folder: Path, args, case: str) -> list[str]:
    return ["seqtrain", "-m", "data.generator.name=bars", "data.generator.derived=true",
            f"data.generator.length={args.length}", "data.target=close", "data.label=direction",
            "data.features=[ret,upper_wick,lower_wick,volume_ratio]", "data.target_as_input=false",
            "task=classification", "data.seq_length=8", "eval=walk_forward", f"eval.folds={args.folds}",
            f"eval.test_size={args.test_size}", f"eval.pbo_blocks={args.pbo_blocks}",
            f"trainer.max_epochs={args.epochs}", "model.num_layers=1", "progress_bar=false", "plots=false",
            f"model.hidden_size={args.hidden}", f"optim.lr={args.lr}", f"seed={args.seeds}",
            *CASES[case], f"hydra.sweep.dir={folder}"]


def nested_windows(folder: Path) -> pd.DataFrame:
    """The nested result's test windows: block k's from the job chosen for block k."""
    blocks = pd.read_csv(folder / "nested.csv")
    parts = []
    for block, job in zip(blocks["block"], blocks["job"], strict=True):
        frame = pd.read_parquet(folder / str(job) / "predictions.parquet")
        parts.append(frame[frame["fold"] == block])
    return pd.concat(parts, ignore_index=True)


def chance(windows: pd.DataFrame) -> dict:
    """What label-blind calls score on these windows: at the nested model's own call shares,
    and always calling the majority class."""
    labels = windows["y_true"].astype(str).value_counts(normalize=True)
    calls = windows["y_pred"].astype(str).value_counts(normalize=True)
    return {"independent": float(sum(calls.get(c, 0.0) * share for c, share in labels.items())),
            "majority": float(labels.max()), "majority_class": str(labels.idxmax()),
            "label_shares": labels.round(4).to_dict(), "call_shares": calls.round(4).to_dict()}


def judge(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    nested = summary["nested"]
    return {"nested": nested, "chance": chance(nested_windows(folder)), "summary": summary}


def report(case: str, found: dict, wall: float) -> None:
    nested, odds, summary = found["nested"], found["chance"], found["summary"]
    low, high = nested["interval"]
    star = nested["selected_in_sample"]
    inside = lambda v: "yes" if low <= v <= high else "no"  # noqa: E731
    figure = lambda key, spec: "n/a" if summary.get(key) is None else format(summary[key], spec)  # noqa: E731
    baselines = ", ".join(f"{k} {v:.3f}" for k, v in nested["baselines"].items())
    persistence = nested["baselines"].get("persistence")
    print(f"\n### {case} ({wall:.0f} s)")
    print(f"nested acc {nested['value']:.3f} ({low:.3f} – {high:.3f}) over {nested['windows']} windows; "
          f"jobs by block: {' '.join(str(b['job']) for b in nested['blocks'])}; "
          f"★ job {star['job']} selected in-sample {star['value']:.3f}")
    print(f"chance: independent calls {odds['independent']:.3f} (in: {inside(odds['independent'])}), "
          f"majority class {odds['majority_class']} {odds['majority']:.3f} (in: {inside(odds['majority'])}), "
          f"0.5 (in: {inside(0.5)}); labels {odds['label_shares']}, calls {odds['call_shares']}")
    print(f"baselines: {baselines}; best {nested['best_baseline']}, skill {nested['skill']:.3f}, "
          f"beats it beyond the interval: {nested['beats_best_baseline']}; beats persistence: "
          f"{persistence is not None and nested['value'] > persistence}")
    dsr = summary.get("dsr")
    verdict = "" if dsr is None else f"; significant at 5%: {'yes' if dsr >= 0.95 else 'no'}"
    print(f"★ job {summary['best_job']}: DSR {figure('dsr', '.3f')} (PSR {figure('psr', '.3f')}, "
          f"Sharpe/period {figure('sharpe', '.4f')}, {summary['n_trials']} trials, variance "
          f"{summary['sharpe_variance']:.3g}, expected max {figure('expected_max_sharpe', '.4f')}, "
          f"{summary.get('periods')} periods){verdict}")
    if summary.get("pbo") is None:
        print(f"PBO: {summary.get('pbo_note')}")
    else:
        print(f"PBO {summary['pbo']:.3f} over {summary['pbo_splits']} splits of {summary['pbo_blocks']} "
              f"blocks ({summary['pbo_periods']} periods, {len(summary['pbo_jobs'])} jobs); P(OOS loss) "
              f"{summary['probability_oos_loss']:.3f}; slope {figure('degradation_slope', '.3f')}")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--length", type=int, default=2000, help="bars per symbol")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--test-size", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--pbo-blocks", type=int, default=16)
    parser.add_argument("--hidden", default="4,16")
    parser.add_argument("--lr", default="0.0003,0.003,0.03")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--keep", help="folder for the sweeps (default: a temporary one)")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.keep or scratch)
        for case in args.case:
            command = sweep_command(root / case, args, case)
            print("$ " + shlex.join(command[:-1]), flush=True)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "seqtrain.cli", *command[1:]], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                sys.exit(f"{case}: the sweep failed ({done.returncode}):\n{done.stderr[-3000:]}")
            results[case] = judge(root / case)
            report(case, results[case], time.perf_counter() - started)
    return results


if __name__ == "__main__":
    main()
