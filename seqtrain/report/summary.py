"""The rich tables printed at the end of a run, and at the end of a sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from seqtrain.config import PRECISIONS
from seqtrain.files import write_csv
from seqtrain.report.nested import _job_number, nested_lines, nested_summary, nested_table_rows
from seqtrain.report.sweep_overfitting import judge_sweep, print_judgement, trading_columns


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _precision(summary: dict) -> str:
    used, asked = summary["precision"], summary.get("precision_requested")
    return used if PRECISIONS.get(str(asked), used) == used else f"{used} (asked {asked})"


def _audit(result: dict) -> str:
    if result["flagged"]:
        return "[bold red]flagged: " + ", ".join(result["flagged"]) + "[/]"
    top = max(result["scores"].values(), default=0.0)
    return f"clear (highest {result['statistic']} {top:.3f} < {result['threshold']})"


def _balance(summary: dict) -> str:
    """Each split's class shares, e.g. ``down 33% flat 34% up 33%``: a split that differs much
    from training makes accuracy hard to compare."""
    parts = []
    for counts in summary["class_counts_by_split"].values():
        total = max(sum(counts), 1)
        shares = zip(summary["classes"], counts, strict=True)
        parts.append(" ".join(f"{c} {n / total:.0%}" for c, n in shares))
    return " · ".join(parts)


def _sample_weight(record: dict) -> str:
    """``data.sample_weight``: the training labels' mean average uniqueness (1: no overlap)."""
    decay = f" · time decay {record['decay']:g}" if record["decay"] != 1 else ""
    return f"mean uniqueness {record['mean_uniqueness']:.3f} of training labels{decay}"


def _trading_rows(trading: dict) -> list[tuple[str, str]]:
    def line(stats: dict) -> str:
        sharpe = "n/a" if stats["sharpe_annualised"] is None else _fmt(stats["sharpe_annualised"])
        if stats.get("sharpe_interval"):
            sharpe += " ({:.2g} – {:.2g})".format(*stats["sharpe_interval"])
        return (f"mean {stats['mean_return']:.2e}/period · Sharpe {sharpe}"
                f" · max drawdown {stats['max_drawdown']:.1%}")
    model = trading["model"]
    sized = " · sized by probability" if trading.get("sizing") == "probability" else ""
    return [(f"trading (cost {trading['cost_bps']:g} bp{sized})",
             f"{line(model)} · hit {_fmt(model['hit_rate'])} · turnover {model['turnover']:.2f}"),
            ("buy and hold", line(trading["buy_and_hold"])),
            # eval.sizing=probability: the book above is sized by p(up) - p(down); the sign rule beside it
            *((("sign rule", line(trading["sign"])),) if trading.get("sign") else ()),
            *_significance_rows(trading)]


def _significance_rows(trading: dict) -> list[tuple[str, str]]:
    """The model book's probabilistic Sharpe ratio, and a walk-forward run's deflated one."""
    model, deflated = trading["model"], trading.get("deflated_sharpe")
    if model.get("psr") is None:
        return []
    rows = [("probabilistic Sharpe",
             f"{model['psr']:.3f}: P(true Sharpe > 0) from {model['periods']} periods (Sharpe "
             f"{model['sharpe_per_period']:.3g}/period, skew {model['skew']:.2f}, "
             f"kurtosis {model['kurtosis']:.2f})")]
    if deflated and deflated["trials"] == 1:
        rows.append(("deflated Sharpe", f"{deflated['dsr']:.3f}: one trial (eval.trials=1), so DSR = PSR"))
    elif deflated:
        spread = "given" if deflated["variance_from"] == "given" else "the estimator's"
        rows.append(("deflated Sharpe",
                     f"{deflated['dsr']:.3f}: the best of eval.trials={deflated['trials']} would reach "
                     f"{deflated['expected_max_sharpe']:.3g}/period without skill (Sharpe variance "
                     f"{deflated['sharpe_variance']:.3g}, {spread})"))
    return rows


def _calibration_rows(calibration: dict) -> list[tuple[str, str]]:
    """Brier score and ECE on the test windows; after temperature scaling, beside before."""
    def scores(values: dict) -> str:
        return f"Brier {values['brier']:.4f} · ECE {values['ece']:.4f}"
    if "temperatures" in calibration:  # walk-forward: each fold's own temperature, pooled test windows
        each = ", ".join(f"{t:.3g}" for t in calibration["temperatures"])
        unit = "split" if "split" in calibration.get("method", "") else "fold"  # cpcv or walk-forward
        return [(f"calibration (test, T by {unit} {each})", scores(calibration))]
    if "before" not in calibration:
        return [("calibration (test)", scores(calibration))]
    return [(f"calibration (test, T={calibration['temperature']:.3g})",
             f"{scores(calibration['before'])} → {scores(calibration)}")]


def _interval_rows(intervals: dict) -> list[tuple[str, str]]:
    """Per conformal level: the test windows' coverage beside the nominal level, and the width."""
    def width(value) -> str:
        return "unbounded" if value is None else f"{value:.4g}"
    return [(f"{name}% interval ({intervals['method'].replace('_', ' ')})",
             f"coverage {_fmt(level['coverage'])} (nominal {level['nominal']:g}) · "
             f"mean width {width(level['mean_width'])}")
            for name, level in intervals["levels"].items()]


def _baseline(summary: dict, key: str, value) -> str:
    """A baseline's test value, with its interval where the skill report drew one (its main metric)."""
    skill = summary.get("skill") or {}
    name, _, metric = key.rpartition("_")
    interval = (skill.get("baseline_intervals") or {}).get(name)
    if interval is None or f"test_{metric}" != skill.get("metric"):
        return _fmt(value)
    return f"{_fmt(value)} ({interval[0]:.4g} – {interval[1]:.4g})"


def _per_class_rows(report: dict) -> list[tuple[str, str]]:
    """Cases: the test macro F1, and each class's one-vs-rest AUROC and recall."""
    def auroc(value) -> str:
        return "–" if value is None else f"{value:.3g}"
    classes = report["classes"]
    return [("test macro F1", _fmt(report["macro_f1"])),
            ("test AUROC per class", " · ".join(f"{c} {auroc(v.get('auroc'))}" for c, v in classes.items())),
            ("test recall per class", " · ".join(f"{c} {v['recall']:.3g}" for c, v in classes.items()))]


def _skill_rows(skill: dict) -> list[tuple[str, str]]:
    low, high = skill["interval"]
    d_low, d_high = skill["improvement_interval"]
    if skill["beats_best_baseline"]:
        verdict = "[bold green]beats it[/]"
    else:
        verdict = "[bold red]worse than it[/]" if d_high < 0 else "[yellow]no better beyond the interval[/]"
    drawn = "bootstrap over cases" if skill.get("independent") else "block bootstrap"
    return [
        (f"{skill['metric']} {skill['level']:.0%} interval", f"{low:.4g} – {high:.4g} ({drawn})"),
        (f"skill vs {skill['best_baseline']}",
         f"{_fmt(skill['skill'])}; error gap {d_low:.3g} – {d_high:.3g}: {verdict}"),
    ]


def print_summary(summary: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"seqtrain · {summary['model']['name']} · {summary['task']}",
                  show_header=True, header_style="bold")
    table.add_column("", style="bold")
    table.add_column("value")
    windows = summary["windows"]
    rows = [
        ("parameters", f"{summary['model']['parameters']:,} ({summary['model']['parameter_mb']:g} MB)"),
        *((k.replace("_", " "), _fmt(v)) for k, v in summary["model"].items()
          if k not in ("name", "parameters", "parameter_mb")),
        (f"{'cases' if summary.get('cases') else 'windows'} train/val/test",
         f"{windows['train']:,} / {windows['val']:,} / {windows['test']:,}"),
        *((("classes train · val · test", _balance(summary)),)
          if summary.get("class_counts_by_split") else ()),
        *(((f"sample weight {summary['sample_weight']['kind']}",
            _sample_weight(summary["sample_weight"])),) if summary.get("sample_weight") else ()),
        ("epochs run (best)", f"{summary['epochs']} (epoch {summary['best_epoch']})"),
        *((k, _fmt(v)) for k, v in summary["best_val"].items()),
        *((k, _fmt(v)) for k, v in summary["test"].items()),
        *(_per_class_rows(summary["per_class"]) if summary.get("per_class") else ()),
        *((f"baseline {k}", _baseline(summary, k, v)) for k, v in summary["baseline_test"].items()),
        *((f"baseline {k}", note) for k, note in (summary.get("baseline_notes") or {}).items()),
        *(_skill_rows(summary["skill"]) if summary.get("skill") else ()),
        *(_trading_rows(summary["trading"]) if summary.get("trading") else ()),
        *(_calibration_rows(summary["calibration"]) if summary.get("calibration") else ()),
        *(_interval_rows(summary["intervals"]) if summary.get("intervals") else ()),
        ("precision", _precision(summary)),
        *((("leakage audit", _audit(summary["leakage_audit"])),) if summary.get("leakage_audit") else ()),
        *((("learning rate (found)", _fmt(summary["lr_find"]["lr"])),) if summary.get("lr_find") else ()),
        ("train samples/s", _fmt(summary["train_samples_per_s"])),
        ("wall time", f"{summary['wall_time_s']:.1f} s"),
        ("run folder", summary["run_dir"]),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def sweep_table(sweep_dir: Path) -> list[dict]:
    """One row per job of a multirun folder: its overrides, best validation and test metrics."""
    rows = []
    for job in sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir()), key=_job_number):
        overrides_file = job / ".hydra" / "overrides.yaml"
        if not overrides_file.exists():
            continue
        overrides = " ".join(yaml.safe_load(overrides_file.read_text()) or [])
        row = {"job": job.name, "overrides": overrides}
        if (job / "failed.json").exists():  # a run stopped by its one-line error
            row["error"] = json.loads((job / "failed.json").read_text())["error"]
        metrics_file = job / "metrics.json"
        if metrics_file.exists():
            metrics = json.loads(metrics_file.read_text())
            walk_forward = metrics.get("eval") in ("walk_forward", "cpcv")
            if "monitor" in metrics:  # walk-forward: the folds' mean
                row.update(monitor=metrics["monitor"], mode=metrics.get("mode", "min"),
                           best_val=metrics["best_val"].get(metrics["monitor"]))
            if walk_forward:  # the folds pooled: no single best epoch
                skill = metrics["pooled"]
                row[skill["metric"]] = skill["value"]
            else:
                skill = metrics.get("skill")
                row.update(metrics["test"])
            if skill:
                low, high = skill["interval"]
                row.update({"interval": f"{low:.3g}–{high:.3g}", "skill": skill["skill"],
                            "beats_baselines": skill["beats_best_baseline"]})
            if not walk_forward:
                row["wall_time_s"] = metrics["wall_time_s"]
            if metrics.get("pruned"):  # hparams_search.pruner stopped it: a result, not a failure
                row["pruned_epoch"] = metrics["pruned"]["epoch"]
            row.update(trading_columns(metrics))  # sharpe (per period) and psr, with a trading view
        rows.append(row)
    return rows


def print_sweep_summary(sweep_dir: Path, console: Console | None = None, pbo_blocks: int = 16,
                        study_trials: int | None = None) -> list[dict]:
    """Print the sweep's jobs side by side and save them as ``summary.csv`` in the sweep folder;
    a failed job's row says so, with its error under the table; under it, walk-forward jobs' nested
    out-of-sample result beside the ★ job's (``report.nested``), the ★ job's deflated Sharpe and the
    sweep's PBO (``sweep_overfitting.judge_sweep``: ``pbo_blocks`` blocks, ``study_trials`` an Optuna
    study's trials). Returns the rows."""
    rows = sweep_table(sweep_dir)
    if not rows:
        return rows
    best = rank(rows)
    nested = nested_summary(sweep_dir, best["job"] if best else None)  # walk-forward jobs only
    frame = pd.DataFrame(rows)
    write_csv(Path(sweep_dir) / "summary.csv", frame)
    shared = set.intersection(*(set(r["overrides"].split()) for r in rows))
    for row in rows:  # show what differs between the runs, not what they all share
        row["overrides"] = " ".join(_short(o) for o in row["overrides"].split() if o not in shared)
    columns = ["rank", *(c for c in frame.columns
                         if c not in ("job", "overrides", "monitor", "mode", "rank", "test_loss", "error"))]
    monitor = next((r["monitor"] for r in rows if "monitor" in r), "best_val")
    console = console or Console()
    console.print(_sweep_table(sweep_dir, rows, columns, monitor, best, nested))
    if best is not None:
        from seqtrain.report.plots import plot_sweep

        ranked = [r for r in rows if r.get("rank") is not None]
        ranked.sort(key=lambda r: _job_number(Path(r["job"])))
        plot_sweep([int(r["job"]) if r["job"].isdigit() else i for i, r in enumerate(ranked)],
                   [r["best_val"] for r in ranked], best["monitor"], best["mode"],
                   Path(sweep_dir) / "summary.png")
        console.print(f"best: job {best['job']} ({best['monitor']} {_fmt(best['best_val'])}) "
                      f"{best['overrides'] or '(the shared settings)'}", soft_wrap=True, highlight=False)
    elif len(monitors(rows)) > 1:
        console.print(f"no job ranked: the jobs monitor different values ({', '.join(monitors(rows))}), "
                      "which do not compare", soft_wrap=True, highlight=False)
    for line in nested_lines(nested):
        console.print(line, soft_wrap=True, highlight=False)
    judged = judge_sweep(sweep_dir, rows, best, pbo_blocks, study_trials)  # deflated Sharpe, PBO
    print_judgement(judged, monitor, console)
    cpcv_jobs = [r["job"] for r in rows if _eval_of(Path(sweep_dir) / r["job"]) == "cpcv"]
    if cpcv_jobs:  # said, not left out silently
        console.print(f"cpcv job(s) {', '.join(cpcv_jobs)}: no nested result, deflated Sharpe or PBO (they "
                      "need walk-forward jobs: one test path, one book); a cpcv job is ranked on validation "
                      "blocks that its other splits test, so the ★ job's pooled result is partly selected "
                      "in-sample: read its paths' spread (paths.csv)", soft_wrap=True, highlight=False)
    pruned = [r for r in rows if r.get("pruned_epoch") is not None]
    if pruned:
        console.print(pruned_line(Path(sweep_dir), pruned, len(rows)), soft_wrap=True, highlight=False)
    for row in rows:
        if row.get("error"):
            console.print(f"job {row['job']} failed: {row['error']}", soft_wrap=True, highlight=False)
    return rows


def pruned_line(sweep_dir: Path, pruned: list[dict], total: int) -> str:
    """Which trials ``hparams_search.pruner`` stopped early, after how many epochs."""
    rule = json.loads((sweep_dir / pruned[0]["job"] / "metrics.json").read_text())["pruned"]["rule"]
    after = ", ".join(f"{r['job']} ({int(r['pruned_epoch']) + 1})" for r in pruned)
    return (f"pruned: {len(pruned)} of {total} trials (hparams_search.pruner={rule}), job (epochs trained): "
            f"{after}; each is ranked by the best value it reached before it stopped")


def _sweep_table(sweep_dir: Path, rows: list[dict], columns: list[str], monitor: str, best: dict | None,
                 nested: dict | None) -> Table:
    """The jobs side by side (``columns`` of each row; ★ on the best), with the ★ job's nested
    out-of-sample rows under them."""
    table = Table(title=f"sweep · {len(rows)} runs · {sweep_dir}", header_style="bold",
                  caption=f"rank: by {monitor} (best epoch; ★ the best run); acc/f1/... : test split, "
                          "with the main metric's 95% interval and skill vs the best baseline; "
                          "full table in summary.csv, objective per job in summary.png")
    table.add_column("job")
    table.add_column("overrides", min_width=20)
    for column in columns:
        name = monitor if column == "best_val" else column.removeprefix("test_")
        table.add_column(name.replace("wall_time_s", "s").replace("sharpe", "sharpe/period"), justify="right")
    for row in rows:
        finished = any(key not in ("job", "overrides", "error") for key in row)
        cells = [_fmt(row[c]) if c in row else "" if finished or i else "failed"
                 for i, c in enumerate(columns)]
        job = f"{row['job']} ★" if best is not None and row is best else row["job"]
        table.add_row(job, row["overrides"], *cells)
    if nested and "blocks" in nested:  # the ★ job's pooled result beside the search's own
        table.add_section()
        for extra in nested_table_rows(nested):
            cells = [_fmt(extra[c]) if c in extra else "" for c in columns]
            table.add_row(extra["job"], extra["overrides"], *cells)
    return table


def _eval_of(job: Path) -> str | None:
    metrics_file = job / "metrics.json"
    return json.loads(metrics_file.read_text()).get("eval") if metrics_file.exists() else None


def rank(rows: list[dict]) -> dict | None:
    """Rank the finished runs by their monitored validation value (1 = best, in the direction
    the monitor improves; ``rank`` set on each finished row); the best row. Jobs that monitor
    different values (a sweep over ``early_stopping.monitor``) are not comparable: None."""
    scored = [r for r in rows if isinstance(r.get("best_val"), (int, float)) and math.isfinite(r["best_val"])]
    if not scored or len(monitors(scored)) > 1:
        return None
    sign = -1 if scored[0].get("mode") == "max" else 1
    scored.sort(key=lambda r: sign * r["best_val"])
    for i, row in enumerate(scored, 1):
        row["rank"] = i
    return scored[0]


def monitors(rows: list[dict]) -> list[str]:
    """The monitored values the finished ``rows`` rank by, each once."""
    return list(dict.fromkeys(f"{r.get('monitor')} ({r.get('mode', 'min')})" for r in rows if "monitor" in r))


def _short(override: str) -> str:
    """``optim.lr=0.0021928634`` -> ``optim.lr=0.002193``: a table cell, not a record."""
    key, _, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return override if value.lstrip("-").isdigit() else f"{key}={number:.4g}"


def _maybe(value) -> str:
    """A figure that may be missing (None or NaN): n/a then."""
    return "n/a" if value is None or value != value else _fmt(value)
