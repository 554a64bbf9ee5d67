"""The leakage audit flags inputs that all but decide the label, and stays quiet on honest data."""

import numpy as np
import pytest

from seqtrain.data.audit import audit, leakage_scores
from tests.helpers import make_table

PARQUET = ["data=parquet", "data.group_col=symbol", "progress_bar=false", "plots=false", "trainer=debug"]


def test_scores_see_through_scaling_and_ties():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 2000)
    columns = np.column_stack([label * 3.0 - 7, rng.normal(size=2000), label + rng.normal(0, 0.6, 2000)])
    scores, statistic = leakage_scores(columns, label, "classification")
    assert statistic == "AUROC" and scores[0] == pytest.approx(1.0)
    assert scores[1] < 0.6 and 0.8 < scores[2] < 0.98


def test_regression_flags_a_shifted_copy_but_not_a_persistent_level():
    rng = np.random.default_rng(1)
    close = 100 + np.cumsum(rng.normal(size=3001))
    now, label = close[:-1], close[1:]  # the target at t and at t+1
    honest_level = now + rng.normal(0, 0.2, 3000)  # e.g. the bar's high: tracks the level
    leaked = label  # close.shift(-1) written into the table
    leaked_sign = (label > now).astype(float)  # up = close.shift(-1) > close
    result = audit(np.column_stack([honest_level, leaked, leaked_sign]), label, ["high", "next", "up"],
                   "regression", 0.98, label_now=now)
    assert result["flagged"] == ["next", "up"], result


def test_cli_warns_once_and_records_a_leaking_column(run_cli, bars):
    # the table's `up` is close.shift(-1) > close: with target close it looks one row ahead
    result = run_cli(*PARQUET, f"data.path={bars}", "data.target=close", "task=regression")
    assert result.code == 0, result.err
    said = " ".join((result.out + result.err).split())
    assert said.count("all but decide the label") == 1 and "'up'" in said
    assert result.metrics()["leakage_audit"]["flagged"] == ["up"]


def test_leakage_audit_error_stops_the_run_with_one_line(run_cli, bars):
    result = run_cli(*PARQUET, f"data.path={bars}", "data.target=close", "task=regression",
                     "data.leakage_audit=error")
    assert result.code == 2 and result.err.strip().startswith("error: leakage audit") and "'up'" in result.err
    assert "Traceback" not in result.err and not (result.run_dir / "metrics.json").exists()


@pytest.mark.parametrize("overrides", [
    ["data.target=close", "task=regression", "data.features=[ret,vol,rsi]"],
    ["data.target=up", "task=classification", "data.horizon=0", "data.features=[ret,vol,rsi]"],
])
def test_honest_tables_pass_the_audit_quietly(run_cli, bars, overrides):
    result = run_cli(*PARQUET, f"data.path={bars}", *overrides)
    assert result.code == 0, result.err
    assert "all but decide the label" not in " ".join((result.out + result.err).split())
    assert result.metrics()["leakage_audit"]["flagged"] == []


def test_non_numeric_columns_left_out_are_named_once(run_cli, tmp_path):
    frame = make_table(300).assign(sector="tech", note="x")
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    result = run_cli(*PARQUET, f"data.path={tmp_path / 't.parquet'}", "data.target=close",
                     "task=regression", "data.group_col=null", "data.leakage_audit=off")
    assert result.code == 0, result.err
    said = " ".join((result.out + result.err).split())
    assert result.metrics()["leakage_audit"] is None  # data.leakage_audit=off skips it
    assert said.count("not used, not numeric") == 1 and "sector (large_string)" in said and "note" in said
