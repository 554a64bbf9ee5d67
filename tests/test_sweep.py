"""Multirun sweeps: a job that fails is recorded, and the others and the summary still run."""

import json

import numpy as np
import pandas as pd
import pytest

from seqtrain.report.overfitting import probabilistic_sharpe, sharpe_moments
from seqtrain.report.sweep_overfitting import aligned_returns, judge_sweep, same_period_sharpes
from tests.conftest import TINY


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(run_cli):
    # the middle grid point asks for windows longer than any series: one line, that job only
    result = run_cli("-m", *TINY, "data.seq_length=8,5000,12")
    assert result.code == 2 and "Traceback" not in result.err
    summary = pd.read_csv(result.run_dir / "summary.csv")
    assert summary["job"].tolist() == [0, 1, 2]
    assert summary["test_acc"].notna().tolist() == [True, False, True]  # the job after it ran too
    error = summary.loc[1, "error"]
    assert error.startswith("data.seq_length: every series is shorter than one window")
    assert json.loads((result.run_dir / "1" / "failed.json").read_text())["error"] == error
    text = " ".join((result.out + result.err).split())
    assert "job 1 failed: data.seq_length" in text and "1 of 3 runs failed" in text


def test_a_sweep_deflates_the_best_jobs_sharpe_and_measures_its_overfitting(run_cli, monkeypatch):
    # four seeds on the bars demo (three series): each job's book returns are saved per grid
    # period, and the sweep judges them together; without failures it exits 0, no error column.
    # The jobs' own plots are the slowest part of a tiny run and not what is checked here
    from seqtrain.report import run as report

    for name in ("plot_curves", "plot_predictions", "plot_equity", "plot_interpretation"):
        monkeypatch.setattr(report, name, lambda *args, **kwargs: None)
    result = run_cli("-m", *TINY, "trainer.max_epochs=1", "data.generator.name=bars", "data.target=close",
                     "data.label=direction", "seed=0,1,2,3", "eval.pbo_blocks=4")
    assert result.code == 0, result.err
    summary = pd.read_csv(result.run_dir / "summary.csv")
    assert "error" not in summary and summary[["sharpe", "psr"]].notna().all().all()
    judged = json.loads((result.run_dir / "summary.json").read_text())
    best = summary.loc[summary["rank"] == 1, "job"].item()
    assert judged["best_job"] == str(best) and judged["n_trials"] == 4 and judged["trials_from"] == "jobs"
    assert judged["sharpe_variance"] == pytest.approx(summary["sharpe"].var(ddof=1))
    assert 0 <= judged["dsr"] <= judged["psr"] <= 1 and judged["expected_max_sharpe"] > 0
    assert 0 <= judged["pbo"] <= 1 and judged["pbo_splits"] == 6 and len(judged["logits"]) == 6
    assert judged["pbo_jobs"] == ["0", "1", "2", "3"] and judged["pbo_left_out"] == []
    assert (result.run_dir / "summary_pbo.png").stat().st_size > 0
    book = pd.read_parquet(result.run_dir / str(best) / "trading.parquet")
    assert list(book) == ["period_start", "period_end", "model", "buy_and_hold"]
    metrics = json.loads((result.run_dir / str(best) / "metrics.json").read_text())["trading"]["model"]
    assert len(book) == metrics["periods"] == judged["pbo_periods"]
    assert metrics["psr"] == pytest.approx(probabilistic_sharpe(**sharpe_moments(book["model"].to_numpy())))
    text = " ".join(result.out.split())
    assert f"deflated Sharpe of job {best} ★" in text and "PBO " in text and "probabilistic Sharpe" in text


def _book(folder, starts, length, returns):
    folder.mkdir(parents=True)
    starts = pd.Timestamp("2024-01-01") + pd.to_timedelta(starts, "D")
    pd.DataFrame({"period_start": starts, "period_end": starts + pd.Timedelta(length, "D"),
                  "model": returns, "buy_and_hold": 0.0}).to_parquet(folder / "trading.parquet")


def test_jobs_are_lined_up_on_the_periods_they_share_and_other_hold_lengths_left_out(tmp_path):
    # jobs 0-3 hold 4 days; job 1 starts a period later and job 2 ends one earlier; job 4 holds 2 days
    rng = np.random.default_rng(0)
    layout = ((0, 0, 10, 4), (1, 4, 9, 4), (2, 0, 9, 4), (3, 0, 10, 4), (4, 0, 20, 2))
    for job, first, count, length in layout:
        starts = np.arange(first, first + count * length, length)
        _book(tmp_path / str(job), starts, length, rng.normal(size=count))
    rows = [{"job": str(j), "sharpe": 0.1} for j in range(5)]
    returns, left_out = aligned_returns(tmp_path, rows, rows[0])
    assert list(returns.columns) == ["0", "1", "2", "3"] and left_out == ["4"]
    starts = returns.index.get_level_values("period_start")
    assert (starts - pd.Timestamp("2024-01-01")).days.tolist() == list(range(4, 36, 4))  # periods 1..8
    original = pd.read_parquet(tmp_path / "3" / "trading.parquet")["model"].to_numpy()
    np.testing.assert_array_equal(returns["3"].to_numpy(), original[1:9])


def test_jobs_with_the_same_book_get_a_note_not_a_pbo_of_one(tmp_path):
    returns = np.random.default_rng(1).normal(size=40)
    for job in range(4):  # e.g. seeds that all end up calling the same side
        _book(tmp_path / str(job), np.arange(40), 1, returns)
    model = {"sharpe_per_period": 0.1, "periods": 40, "skew": 0.0, "kurtosis": 3.0}
    (tmp_path / "0" / "metrics.json").write_text(json.dumps({"trading": {"model": model}}))
    rows = [{"job": str(j), "sharpe": 0.1} for j in range(4)]
    judged = judge_sweep(tmp_path, rows, rows[0], blocks=4)
    assert judged["pbo"] is None and "the same period by period" in judged["pbo_note"]


def test_the_trials_sharpe_ratios_are_measured_on_the_star_jobs_periods(tmp_path):
    # jobs 0 and 1 hold 1 day, job 2 holds 4 days: on 4-day periods a daily Sharpe ratio is twice
    # as large (sqrt 4), on 1-day periods a 4-day one half; V of 0.2, 0.6, 0.4 is 0.04
    for job, length in ((0, 1), (1, 1), (2, 4)):
        _book(tmp_path / str(job), np.arange(0, 40, length), length, 0.0)
    rows = [{"job": "0", "sharpe": 0.1}, {"job": "1", "sharpe": 0.3}, {"job": "2", "sharpe": 0.4},
            {"job": "3", "sharpe": None}]  # job 3: a book that never varies
    assert same_period_sharpes(tmp_path, rows, rows[2]) == pytest.approx([0.2, 0.6, 0.4])
    assert same_period_sharpes(tmp_path, rows, rows[0]) == pytest.approx([0.1, 0.3, 0.2])
    assert np.var(same_period_sharpes(tmp_path, rows, rows[2]), ddof=1) == pytest.approx(0.04)
    model = {"sharpe_per_period": 0.4, "periods": 10, "skew": 0.0, "kurtosis": 3.0}
    (tmp_path / "2" / "metrics.json").write_text(json.dumps({"trading": {"model": model}}))
    assert judge_sweep(tmp_path, rows, rows[2])["sharpe_variance"] == pytest.approx(0.04)


def test_jobs_that_monitor_different_values_are_not_ranked_against_each_other():
    from seqtrain.report.summary import rank

    same = [{"job": "0", "monitor": "val_loss", "mode": "min", "best_val": 0.5},
            {"job": "1", "monitor": "val_loss", "mode": "min", "best_val": 0.4}]
    assert rank(same)["job"] == "1" and [r["rank"] for r in same] == [2, 1]
    mixed = [{"job": "0", "monitor": "val_loss", "mode": "min", "best_val": 0.5},
             {"job": "1", "monitor": "val_acc", "mode": "max", "best_val": 0.9}]
    assert rank(mixed) is None and all("rank" not in r for r in mixed)


def test_a_cpcv_sweep_says_what_it_leaves_out(tmp_path):
    """cpcv jobs have no single test path or book: the sweep says so under its table, no traceback."""
    import io

    from rich.console import Console

    from seqtrain.report.summary import print_sweep_summary

    pooled = {"metric": "test_acc", "value": 0.5, "interval": [0.4, 0.6], "skill": 0.0,
              "beats_best_baseline": False}
    for job, loss in (("0", 0.6), ("1", 0.5)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- eval=cpcv\n- seed={job}\n")
        (tmp_path / job / "metrics.json").write_text(json.dumps(
            {"eval": "cpcv", "monitor": "val_loss", "mode": "min", "best_val": {"val_loss": loss},
             "pooled": pooled}))
    out = io.StringIO()
    rows = print_sweep_summary(tmp_path, Console(file=out, width=300))
    assert [r["rank"] for r in rows] == [2, 1]
    said = " ".join(out.getvalue().split())
    assert "cpcv job(s) 0, 1: no nested result, deflated Sharpe or PBO" in said
