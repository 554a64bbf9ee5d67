"""A sweep's trading views judged together, under its table: the deflated Sharpe ratio of the job
ranked first (★), over as many trials as the sweep ran, and the probability of backtest
overfitting over the jobs' per-period book returns (``trading.parquet`` of each job), saved as
``summary.json`` and ``summary_pbo.png`` in the sweep folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from seqtrain.errors import SeqtrainError
from seqtrain.files import merge_into_json
from seqtrain.report.overfitting import backtest_overfitting, deflated_report

MIN_PBO_JOBS = 4


def check_pbo_blocks(blocks) -> None:
    """``eval.pbo_blocks``: an even integer >= 2."""
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 2 or blocks % 2:
        raise SeqtrainError(f"eval.pbo_blocks: {blocks!r}; an even integer >= 2 (blocks of periods for the "
                            "probability of backtest overfitting, default 16)")


def trading_columns(metrics: dict) -> dict:
    """A job's Sharpe ratio per period (not annualised) and PSR for the sweep table; nothing
    without a trading view."""
    model = (metrics.get("trading") or {}).get("model")
    return {"sharpe": model.get("sharpe_per_period"), "psr": model.get("psr")} if model else {}


def study_trials(sweeper) -> int | None:
    """The completed trials of a stored Optuna study, which may hold more than this sweep's
    folder (a resumed study, parallel workers); None for other sweepers or an in-memory study,
    whose trials are the folder's jobs."""
    if "optuna" not in str(sweeper.get("_target_", "")).lower() or not sweeper.get("storage"):
        return None
    try:
        import optuna

        study = optuna.load_study(study_name=sweeper.study_name, storage=sweeper.storage)
    except Exception:  # the study's own sweep reported any problem with it; the count is a bonus
        return None
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def judge_sweep(sweep_dir: Path, rows: list[dict], best: dict | None, blocks: int = 16,
                trials: int | None = None) -> dict | None:
    """The deflated Sharpe ratio of ``best`` (the ★ job) and the sweep's PBO, written to
    ``summary.json`` (merged into what is there) and ``summary_pbo.png``; None when no job has a
    trading view. ``trials``: the study's completed trials where they outnumber the jobs."""
    traded = [r for r in rows if "sharpe" in r]  # finished jobs with a trading view
    if not traded:
        return None
    sweep_dir = Path(sweep_dir)
    result = {"best_job": best["job"] if best else None, **_deflated(sweep_dir, traded, best, trials),
              **_pbo(sweep_dir, traded, best, blocks)}
    if result.get("logits") is not None:
        from seqtrain.report.plots import plot_pbo

        plot_pbo(result["logits"], result["pbo"], sweep_dir / "summary_pbo.png")
    merge_into_json(sweep_dir / "summary.json", result, default=_plain)
    return result


def _deflated(sweep_dir: Path, traded: list[dict], best: dict | None, trials: int | None) -> dict:
    """DSR of the ★ job: N the jobs with a trading view (or the study's trials, if more), V the
    variance (ddof=1) of their per-period Sharpe ratios on the ★ job's periods
    (``same_period_sharpes``)."""
    sharpes = same_period_sharpes(sweep_dir, traded, best)
    count = max(len(traded), trials or 0)
    variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
    out = {"n_trials": count, "trials_from": "optuna study" if count > len(traded) else "jobs",
           "sharpe_variance": variance, "dsr": None}
    if best is None:
        return {**out, "dsr_note": "no job is ranked first (none finished with a monitored value)"}
    if "sharpe" not in best:
        return {**out, "dsr_note": f"the best job ({best['job']} ★) has no trading view"}
    model = json.loads((sweep_dir / best["job"] / "metrics.json").read_text())["trading"]["model"]
    report = deflated_report(model, count, variance)
    if report is None:
        return {**out, "dsr_note": "the best job's book has no Sharpe ratio (its returns do not vary)"}
    return {**out, "dsr": report["dsr"], "psr": report["psr"], "sharpe": report["sharpe_per_period"],
            "expected_max_sharpe": report["expected_max_sharpe"], "periods": model["periods"]}


def same_period_sharpes(sweep_dir: Path, traded: list[dict], best: dict | None) -> list[float]:
    """The jobs' per-period Sharpe ratios, each brought to the ★ job's period length (times the
    square root of its length over the job's, as annualising does): a job with another hold or
    ``data.horizon`` measures its Sharpe ratio over longer or shorter periods, and mixed as they
    are they would misstate how far apart the trials fall."""
    lengths = {}
    for row in traded:
        path = Path(sweep_dir) / row["job"] / "trading.parquet"
        if path.exists():
            periods = pd.read_parquet(path, columns=["period_start", "period_end"])
            lengths[row["job"]] = _period_length(periods.set_index(["period_start", "period_end"]))
    reference = lengths.get(best["job"]) if best is not None else None
    out = []
    for row in traded:
        if row["sharpe"] is None:
            continue
        length = lengths.get(row["job"])
        scale = math.sqrt(reference / length) if reference is not None and length is not None else 1.0
        out.append(row["sharpe"] * scale)
    return out


def _pbo(sweep_dir: Path, traded: list[dict], best: dict | None, blocks: int) -> dict:
    """PBO over the jobs' model returns on the periods they all share."""
    out = {"pbo": None, "pbo_blocks": blocks}
    returns, left_out = aligned_returns(sweep_dir, traded, best)
    out["pbo_left_out"] = left_out
    jobs = list(returns.columns)
    if len(jobs) < MIN_PBO_JOBS:
        return {**out, "pbo_note": f"PBO needs at least {MIN_PBO_JOBS} jobs with trading views on the same "
                                   f"periods; this sweep has {len(jobs)}"}
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 2 or blocks % 2:
        return {**out, "pbo_note": f"eval.pbo_blocks: {blocks!r} is not an even integer >= 2"}
    if len(returns) < 2 * blocks:
        return {**out, "pbo_note": f"PBO: {len(returns)} common periods are too few for eval.pbo_blocks="
                                   f"{blocks} (at least 2 periods a block); lower eval.pbo_blocks"}
    if len(returns.T.drop_duplicates()) < 2:  # every split would rank tied jobs at the median
        return {**out, "pbo_note": f"PBO: the {len(jobs)} jobs' books are the same period by period, so "
                                   "there is nothing to select between"}
    found = backtest_overfitting(returns.to_numpy(), blocks)
    return {**out, "pbo": found["pbo"], "probability_oos_loss": found["probability_oos_loss"],
            "degradation_slope": found["degradation_slope"],
            "degradation_intercept": found["degradation_intercept"], "pbo_splits": found["splits"],
            "pbo_periods": found["periods"], "pbo_jobs": jobs, "logits": found["logits"]}


def aligned_returns(sweep_dir: Path, traded: list[dict], best: dict | None) -> tuple[pd.DataFrame, list]:
    """The model books' per-period returns (``trading.parquet``), one column per job, on the
    grid periods every job has (matched by start and end). Only jobs whose periods have the
    length of the ★ job's (else the commonest length) take part: the others (another
    ``data.horizon``, another hold) are returned by name, left out."""
    books = {}
    for row in traded:
        path = Path(sweep_dir) / row["job"] / "trading.parquet"
        if path.exists():
            frame = pd.read_parquet(path)
            books[row["job"]] = frame.set_index(["period_start", "period_end"])["model"]
    if not books:
        return pd.DataFrame(), []
    lengths = {job: _period_length(book) for job, book in books.items()}
    reference = (lengths[best["job"]] if best is not None and best["job"] in lengths
                 else pd.Series(list(lengths.values())).mode().iloc[0])
    kept = [job for job in books if lengths[job] == reference]
    joined = pd.concat([books[job].rename(job) for job in kept], axis=1, join="inner")
    return joined, [job for job in books if job not in kept]


def _period_length(book: pd.Series):
    starts, ends = book.index.get_level_values(0), book.index.get_level_values(1)
    return pd.Series(ends - starts).median() if len(book) else None


def print_judgement(result: dict | None, monitor: str, console) -> None:
    """The lines under the sweep table: the ★ job's deflated Sharpe and the sweep's PBO."""
    if result is None:
        return
    print_line = lambda text: console.print(text, soft_wrap=True, highlight=False)  # noqa: E731
    trials = f"{result['n_trials']} trial{'s' if result['n_trials'] != 1 else ''}"
    source = ("the Optuna study's completed trials" if result["trials_from"] == "optuna study"
              else "the sweep's finished jobs with a trading view")
    if result["dsr"] is not None:
        verdict = ("significant at 5% given the trials" if result["dsr"] >= 0.95
                   else "below 0.95: not significant at 5% given the trials")
        print_line(f"deflated Sharpe of job {result['best_job']} ★ (ranked first by {monitor}): "
                   f"{result['dsr']:.3f} over {trials} ({source}; per-period Sharpe {result['sharpe']:.3g}, "
                   f"variance across trials {result['sharpe_variance']:.3g}, the best of as many without "
                   f"skill would reach {result['expected_max_sharpe']:.3g}; PSR {result['psr']:.3f}): "
                   f"{verdict}")
    elif result.get("dsr_note"):
        print_line(f"deflated Sharpe: {result['dsr_note']}")
    if result["pbo"] is None:
        print_line(result["pbo_note"])
    else:
        slope = result["degradation_slope"]
        print_line(f"PBO {result['pbo']:.2f}: over {result['pbo_splits']:,} splits of {result['pbo_blocks']} "
                   f"blocks of the {result['pbo_periods']} periods all {len(result['pbo_jobs'])} jobs share, "
                   f"the job with the best in-sample Sharpe ranked at or below the median out of sample "
                   f"that often; P(out-of-sample loss) {result['probability_oos_loss']:.2f}; degradation "
                   f"slope {'n/a' if slope is None else f'{slope:.2f}'} (out- on in-sample Sharpe; "
                   "summary_pbo.png)")
    if result["pbo_left_out"]:
        print_line(f"left out of PBO: job(s) {', '.join(result['pbo_left_out'])} (periods of another length "
                   "than the ★ job's: another data.horizon or hold)")


def _plain(value):
    """numpy values as JSON: arrays as lists, numbers as numbers, NaN as null."""
    if isinstance(value, np.ndarray):
        return [None if not math.isfinite(v) else float(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
