"""The trading view of direction predictions: non-overlapping holding periods, costs per change
of position, beside buy-and-hold."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from seqtrain.report.trading import trading_report
from tests.helpers import make_table


def _frame(moves, predictions, start="2024-01-01", freq="D"):
    return pd.DataFrame({"window_end": pd.date_range(start, periods=len(moves), freq=freq),
                         "symbol": "A", "move": moves, "y_pred": predictions})


def test_a_perfect_call_earns_every_move_less_costs():
    moves = np.array([0.01, -0.02, 0.03, -0.01])
    calls = np.where(moves > 0, "up", "down")
    report = trading_report(_frame(moves, calls), "symbol", horizon=1, cost_bps=10)
    model = report["model"]
    changes = np.abs(np.diff(np.r_[0, np.sign(moves)]))  # enter, then flip three times
    np.testing.assert_allclose(model["mean_return"], np.mean(np.abs(moves) - changes * 10 / 1e4))
    assert model["hit_rate"] == 1.0 and model["time_in_market"] == 1.0
    assert report["buy_and_hold"]["mean_return"] == pytest.approx(np.mean(moves) - 10 / 1e4 / 4)
    assert model["sharpe_annualised"] > 0 and report["buy_and_hold"]["max_drawdown"] > 0


def test_holding_periods_do_not_overlap_and_flat_stays_out():
    moves = np.array([0.01, 0.5, -0.02, 0.5, 0.03, 0.5])  # the odd windows overlap the even ones
    report = trading_report(_frame(moves, ["up", "up", "flat", "up", "up", "up"]), "symbol", horizon=2)
    model = report["model"]
    assert model["periods"] == 3  # windows 0, 2, 4
    np.testing.assert_allclose(model["mean_return"], np.mean([0.01, 0.0, 0.03]))
    assert model["time_in_market"] == pytest.approx(2 / 3)


def test_no_trading_view_without_direction_labels():
    assert trading_report(pd.DataFrame({"window_end": [], "y_pred": []}), None, 1) is None


def test_a_direction_run_reports_its_trading_view(run_cli, tmp_path):
    path = tmp_path / "bars.parquet"
    make_table(500, n_series=2).to_parquet(path, index=False)
    result = run_cli("data=parquet", f"data.path={path}", "data.target=close", "data.group_col=symbol",
                     "data.features=[ret,vol,rsi]", "data.label=direction", "data.horizon=2",
                     "data.seq_length=8", "model.hidden_size=8", "trainer.max_epochs=1", "eval.cost_bps=5",
                     "progress_bar=false")
    assert result.code == 0, result.err
    trading = json.loads((result.run_dir / "metrics.json").read_text())["trading"]
    assert trading["cost_bps"] == 5 and trading["horizon_rows"] == 2
    stats = {"mean_return", "sharpe_annualised", "hit_rate", "turnover", "max_drawdown"}
    assert stats <= set(trading["model"])
    assert (result.run_dir / "plots" / "equity.png").is_file()
    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    close = pd.read_parquet(path).set_index(["symbol", "time"])["close"]
    row = predictions.iloc[0]  # the realised move from the window's end to its label row
    expected = close[(row["symbol"], row["time"])] / close[(row["symbol"], row["window_end"])] - 1
    assert row["move"] == pytest.approx(expected, rel=1e-5)
    assert "trading (cost 5 bp)" in result.out


def test_the_sharpe_ratio_comes_with_an_interval_that_shows_noise():
    rng = np.random.default_rng(5)
    moves = rng.normal(0, 0.01, 150)  # a random walk: nothing to predict
    calls = np.where(rng.random(150) > 0.5, "up", "down")
    model = trading_report(_frame(moves, calls), "symbol", horizon=1)["model"]
    low, high = model["sharpe_interval"]
    assert low < model["sharpe_annualised"] < high and low < 0 < high
