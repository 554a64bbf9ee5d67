"""Multirun sweeps: a job that fails is recorded, and the others and the summary still run."""

import json

import pandas as pd

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


def test_a_sweep_without_failures_exits_zero_with_no_error_column(run_cli):
    result = run_cli("-m", *TINY, "data.seq_length=8,12")
    assert result.code == 0, result.err
    assert "error" not in pd.read_csv(result.run_dir / "summary.csv")
