"""Labels built from the target's moves (``data.label``): the move from a window's last row t to
t+h, per series, fit statistics on training rows only, never an input."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrain.data.labels import LabelSpec, labels_from_moves, moves
from seqtrain.data.memory import read_table
from seqtrain.data.windows import series_bounds
from seqtrain.errors import SeqtrainError
from tests.helpers import make_table


def data_cfg(path, *overrides):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        return compose("config", overrides=["data=parquet", f"data.path={path}", "data.target=close",
                                            "data.group_col=symbol", "data.features=[ret,vol,rsi]",
                                            *overrides]).data


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=4), st.integers(1, 5), st.integers(0, 10**6))
def test_moves_stay_inside_their_series_and_price_and_return_kinds_agree(lengths, horizon, seed):
    rng = np.random.default_rng(seed)
    prices = np.exp(np.cumsum(rng.normal(0, 0.01, sum(lengths)))) * 100
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    got = moves(prices, bounds, horizon, "price")
    returns = np.empty_like(prices)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        returns[a:b] = np.r_[np.nan, prices[a + 1:b] / prices[a:b - 1] - 1]
        for r in range(a, b):
            if r - horizon >= a:
                assert got[r] == pytest.approx(np.log(prices[r] / prices[r - horizon]))
            else:
                assert np.isnan(got[r])  # never reaches into the previous series
    from_returns = moves(returns, bounds, horizon, "return")
    # a return series has no value at each series' first row, so it starts one row later
    both = np.isfinite(from_returns)
    np.testing.assert_allclose(from_returns[both], got[both], rtol=1e-9, atol=1e-12)


def test_directions_with_and_without_a_dead_zone():
    log_moves = np.log1p(np.array([-0.02, -0.0005, 0.0, 0.0004, 0.03, np.nan]))
    assert labels_from_moves("direction", log_moves, 0.001).tolist() == ["down", "flat", "flat", "flat",
                                                                           "up", None]
    assert labels_from_moves("direction", log_moves, 0.0).tolist() == ["down", "down", "flat", "up",
                                                                         "up", None]


def test_the_window_ending_at_t_is_labelled_by_the_move_from_t_to_t_plus_h(tmp_path):
    table = make_table(400, n_series=2)
    path = tmp_path / "bars.parquet"
    table.to_parquet(path, index=False)
    cfg = data_cfg(path, "data.label=direction", "data.horizon=3", "data.dead_zone=0.01", "data.seq_length=8")
    data = read_table(cfg, "classification", str(path))
    classes = np.asarray(data.classes, dtype=object)
    close = table.sort_values(["symbol", "time"], kind="stable")["close"].to_numpy()
    bounds = series_bounds(data.series)
    assert data.state.to_dict()["label"] == {"kind": "direction", "target_kind": "price", "dead_zone": 0.01}
    for ends in data.ends.values():
        move = close[ends + 3] / close[ends] - 1
        expected = np.where(move > 0.01, "up", np.where(move < -0.01, "down", "flat"))
        assert (classes[data.labels[ends + 3]] == expected).all()
        # the label rows are in the window's own series
        series_of = lambda rows: np.searchsorted(bounds, rows, side="right")  # noqa: E731
        assert (series_of(ends) == series_of(ends + 3)).all()
    # the move is a label only: the inputs are the features and close's own past level
    assert data.input_names == ["ret", "vol", "rsi", "close"]
    assert set(data.state.to_dict()["class_counts_by_split"]) == {"train", "val", "test"}


def test_a_quantile_dead_zone_is_fit_on_training_rows_only(tmp_path):
    table = make_table(600, n_series=1)
    cfg_args = ["data.label=direction", "data.horizon=2", "data.dead_zone=q0.33", "data.group_col=null"]
    path = tmp_path / "a.parquet"
    table.to_parquet(path, index=False)
    first = read_table(data_cfg(path, *cfg_args), "classification", str(path))
    wild = table.copy()
    test_rows = wild.index >= int(len(wild) * 0.86)  # inside the test period
    wild.loc[test_rows, "close"] *= np.exp(np.random.default_rng(0).normal(0, 0.2, test_rows.sum()))
    path = tmp_path / "b.parquet"
    wild.to_parquet(path, index=False)
    second = read_table(data_cfg(path, *cfg_args), "classification", str(path))
    assert second.state.to_dict()["label"]["dead_zone"] == first.state.to_dict()["label"]["dead_zone"]
    counts = np.asarray(first.state.to_dict()["class_counts"])
    assert first.classes == ["down", "flat", "up"]
    assert counts.min() > 0.25 * counts.sum()  # about a third each on training windows


def test_log_return_labels_for_regression(tmp_path):
    table = make_table(300, n_series=1)
    path = tmp_path / "bars.parquet"
    table.to_parquet(path, index=False)
    data = read_table(data_cfg(path, "data.label=log_return", "data.horizon=1", "data.group_col=null"),
                   "regression", str(path))
    close = table["close"].to_numpy()
    ends = data.ends["test"]
    got = data.target_scaler.inverse(data.labels[ends + 1]).ravel()
    np.testing.assert_allclose(got, np.log(close[ends + 1] / close[ends]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("overrides, task, expected", [
    (["data.label=direction"], "regression", "a classification label; set task=classification"),
    (["data.label=log_return"], "classification", "set task=regression"),
    (["data.label=direction", "data.horizon=0"], "classification", "needs data.horizon >= 1"),
    (["data.label=direction", "data.dead_zone=qx"], "classification", "write a quantile as e.g. q0.33"),
    (["data.label=direction", "data.dead_zone=-1"], "classification", "data.dead_zone: -1"),
    (["data.label=sideways"], "classification", "data.label: 'sideways'; choose one of"),
    (["data.label=direction", "data.target=ret"], "classification", "prices must be > 0"),
])
def test_bad_label_settings_are_one_line(tmp_path, overrides, task, expected):
    path = tmp_path / "bars.parquet"
    make_table(300, n_series=2).to_parquet(path, index=False)
    with pytest.raises(SeqtrainError, match=re.escape(expected)):
        read_table(data_cfg(path, *overrides), task, str(path))


def test_label_spec_reads_the_config():
    spec = LabelSpec("direction", "return", "q0.5", 4)
    assert spec.builds and spec.quantile == 0.5
    assert not LabelSpec().builds
    assert pd.isna(labels_from_moves("return", np.array([np.nan]), 0.0)[0])


def test_a_direction_run_predicts_its_own_test_windows_back(run_cli, tmp_path):
    from tests.test_predict import assert_predict_reproduces_the_run

    path = tmp_path / "bars.parquet"
    make_table(500, n_series=2).to_parquet(path, index=False)
    result = run_cli("data=parquet", f"data.path={path}", "data.target=close", "data.group_col=symbol",
                     "data.features=[ret,vol,rsi]", "data.label=direction", "data.horizon=2",
                     "data.dead_zone=q0.33", "data.seq_length=8", "model.hidden_size=8",
                     "trainer.max_epochs=1", "progress_bar=false", "plots=false")
    assert result.code == 0, result.err
    predicted = assert_predict_reproduces_the_run(result.run_dir, tmp_path, path)
    assert {"prob_down", "prob_flat", "prob_up"} <= set(predicted.columns)
    # the newest windows' moves are still in the future: no truth, a forecast all the same
    newest = predicted.sort_values("window_end").groupby("symbol").tail(1)
    assert newest["y_true"].isna().all() and newest["y_pred"].notna().all()
