"""The rich table printed at the end of a run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_summary(summary: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"seqtrain · {summary['model']['name']} · {summary['task']}",
                  show_header=True, header_style="bold")
    table.add_column("", style="bold")
    table.add_column("value")
    windows = summary["windows"]
    rows = [
        ("parameters", f"{summary['model']['parameters']:,}"),
        ("windows train/val/test", f"{windows['train']:,} / {windows['val']:,} / {windows['test']:,}"),
        ("epochs run (best)", f"{summary['epochs']} (epoch {summary['best_epoch']})"),
        *((k, _fmt(v)) for k, v in summary["best_val"].items()),
        *((k, _fmt(v)) for k, v in summary["test"].items()),
        *((f"baseline {k}", _fmt(v)) for k, v in summary["baseline_test"].items()),
        ("precision", summary["precision"]),
        ("train samples/s", _fmt(summary["train_samples_per_s"])),
        ("wall time", f"{summary['wall_time_s']:.1f} s"),
        ("run folder", summary["run_dir"]),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
