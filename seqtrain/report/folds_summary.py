"""The tables of runs with many models: one row per walk-forward fold, one per CPCV path."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from seqtrain.report.summary import _calibration_rows, _fmt, _interval_rows, _maybe, _trading_rows


def print_walk_forward(summary: dict, console: Console | None = None) -> None:
    """One row per fold (test period start, windows, the main metric with its interval, the
    pooled best baseline on the same windows, skill against the fold's best baseline, whether it
    beats it beyond the interval) and the pooled result; under it, the baselines a fold left out
    or filled in (``baseline_notes``)."""
    pooled = summary["pooled"]
    metric, best = pooled["metric"], pooled["best_baseline"]
    table = Table(title=f"seqtrain · {summary['model']} · {summary['task']} · walk-forward "
                        f"({len(summary['folds'])} folds, {summary['scheme']})", header_style="bold",
                  caption=f"skill: against each fold's best baseline; {best}: the pooled best")
    for column in ("fold", "test from", "windows", metric.removeprefix("test_"), "95% interval", best,
                   "skill", "beats"):
        table.add_column(column, justify="left" if column == "test from" else "right")
    for row in summary["folds"]:
        table.add_row(str(row["fold"]), str(row["test_start"])[:10], f"{row['windows_test']:,}",
                      f"{row[metric]:.3f}", f"{row['interval_low']:.3f}–{row['interval_high']:.3f}",
                      f"{row.get(f'baseline_{best}', float('nan')):.3f}", f"{row['skill']:.2f}",
                      "yes" if row["beats_best_baseline"] else "no")
    low, high = pooled["interval"]
    table.add_row("pooled", "", f"{summary['windows_tested']:,}", f"{pooled['value']:.3f}",
                  f"{low:.3f}–{high:.3f}", f"{pooled['baselines'][best]:.3f}", f"{pooled['skill']:.2f}",
                  "[bold green]yes[/]" if pooled["beats_best_baseline"] else "[yellow]no[/]", style="bold")
    if console is None:  # the table needs about 100 columns; logs default to 80
        width = Console().width
        console = Console(width=max(width, 100))
    console.print(table)
    for name, note in (summary.get("baseline_notes") or {}).items():  # baselines left out or filled in
        console.print(f"baseline {name}: {note}", soft_wrap=True, highlight=False)
    extra = [*(_trading_rows(summary["trading"]) if summary.get("trading") else ()),
             *(_calibration_rows(summary["calibration"]) if summary.get("calibration") else ()),
             *(_interval_rows(summary["intervals"]) if summary.get("intervals") else ())]
    for name, value in extra:
        console.print(f"{name}: {value}", soft_wrap=True, highlight=False)
    console.print(f"run folder: {summary['run_dir']}", soft_wrap=True, highlight=False)


def print_cpcv(summary: dict, console: Console | None = None) -> None:
    """One row per backtest path of a CPCV run (the splits it takes, windows, the main metric,
    the best baseline on the same windows, skill, Sharpe), then each figure's quantiles over the
    paths, and the line that says walk-forward gives one path."""
    paths, quantiles = summary["paths"], summary["quantiles"]
    metric = next(k for k in quantiles if k.startswith("test_"))
    name = metric.removeprefix("test_")
    table = Table(title=f"seqtrain · {summary['model']} · {summary['task']} · cpcv ({summary['groups']} "
                        f"groups, {summary['test_groups']} tested: {len(summary['splits'])} splits, "
                        f"{summary['n_paths']} paths)", header_style="bold",
                  caption="each path tests every group once; splits: the split each group's test comes from")
    for column in ("path", "splits", "windows", name, "best baseline", "skill", "sharpe"):
        table.add_column(column, justify="left" if column in ("splits", "best baseline") else "right")
    for row in paths:
        table.add_row(str(row["path"]), row["splits"], f"{row['windows']:,}", _fmt(row[metric]),
                      f"{row['best_baseline']} {_fmt(row['baseline'])}", _maybe(row["skill"]),
                      _maybe(row["sharpe"]))
    spread = Table(title="over the paths", header_style="bold")
    spread.add_column("")
    for q in ("5%", "25%", "50%", "75%", "95%"):
        spread.add_column(q, justify="right")
    for key, label in ((metric, name), ("skill", "skill"), ("sharpe", "sharpe")):
        if quantiles.get(key):
            spread.add_row(label, *(_fmt(v) for v in quantiles[key].values()))
    if console is None:
        console = Console(width=max(Console().width, 100))
    console.print(table)
    console.print(spread)
    console.print(summary["walk_forward"], soft_wrap=True, highlight=False)
    for baseline, note in (summary.get("baseline_notes") or {}).items():
        console.print(f"baseline {baseline}: {note}", soft_wrap=True, highlight=False)
    extra = [*(_calibration_rows(summary["calibration"]) if summary.get("calibration") else ()),
             *(_interval_rows(summary["intervals"]) if summary.get("intervals") else ())]
    for name, value in extra:  # every split's test windows together
        console.print(f"{name}: {value}", soft_wrap=True, highlight=False)
    console.print(f"run folder: {summary['run_dir']}", soft_wrap=True, highlight=False)
