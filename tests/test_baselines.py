"""Baselines, skill and intervals beside every result: the numbers a user compares first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqtrain.report.baselines import (
    baseline_predictions,
    block_bootstrap,
    fit_last_row_model,
    last_row_predictions,
    skill_report,
    window_losses,
)
from tests.helpers import make_table


def test_block_bootstrap_pairs_the_draws():
    rng = np.random.default_rng(0)
    losses = rng.random(500)
    draws = block_bootstrap({"a": losses, "b": losses + 1.0}, block=20)
    np.testing.assert_allclose(draws["b"] - draws["a"], 1.0)  # the same blocks for both
    assert draws["a"].std() > 0


def test_block_bootstrap_widens_the_interval_of_autocorrelated_losses():
    # runs of 50 equal values: i.i.d. resampling would think it has 20x more information
    losses = np.repeat(np.random.default_rng(1).random(40) > 0.5, 50).astype(float)
    single = block_bootstrap({"x": losses}, block=1)["x"].std()
    blocks = block_bootstrap({"x": losses}, block=50)["x"].std()
    assert blocks > 3 * single


def test_skill_report_says_beats_only_beyond_the_interval():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, 2000)
    coin = rng.integers(0, 2, 2000)
    good = np.where(rng.random(2000) < 0.8, truth, 1 - truth)
    baseline = {"coin": window_losses("classification", truth, coin)}
    clear = skill_report("classification", "test_acc", window_losses("classification", truth, good), baseline)
    assert clear["beats_best_baseline"] and clear["skill"] > 0.5
    low, high = clear["interval"]
    assert low < clear["value"] < high and 0.75 < clear["value"] < 0.85
    other_coin = rng.integers(0, 2, 2000)
    tie = skill_report("classification", "test_acc", window_losses("classification", truth, other_coin),
                       baseline)
    assert not tie["beats_best_baseline"]
    assert tie["improvement_interval"][0] < 0 < tie["improvement_interval"][1]


def test_persistence_only_where_the_last_label_is_known():
    y_last = np.array([0, 1, 1])
    assert "persistence" in baseline_predictions("classification", 1, y_last, 0.0, 0, y_last)
    # with horizon 0 the label column at the last row already looks ahead: no such baseline
    assert "persistence" not in baseline_predictions("classification", 0, y_last, 0.0, 0, y_last)


def test_last_row_models_learn_what_the_last_row_shows():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 3))
    y = (x[:, 1] > 0.2).astype(int)
    weights = fit_last_row_model("classification", x, y, 2)
    assert (last_row_predictions("classification", weights, x) == y).mean() > 0.95
    target = np.column_stack([2 * x[:, 0] - x[:, 2], x[:, 1]])
    weights = fit_last_row_model("regression", x, target)
    np.testing.assert_allclose(last_row_predictions("regression", weights, x), target, atol=0.02)


@pytest.fixture
def random_walk(tmp_path):
    """Bars whose next move no input can tell: the features are noise and the label a coin."""
    path = tmp_path / "walk.parquet"
    make_table(1500, n_series=2, seed=7).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("model", ["lstm", "tcn"])
def test_on_a_random_walk_no_model_beats_the_baselines(run_cli, random_walk, model):
    result = run_cli(f"model={model}", "data=parquet", f"data.path={random_walk}", "data.target=up",
                     "data.group_col=symbol", "data.horizon=0", "data.features=[ret,vol,rsi]",
                     "data.embargo=1", "data.seq_length=16", "trainer.max_epochs=3", "progress_bar=false")
    assert result.code == 0, result.err
    metrics = result.metrics()
    skill = metrics["skill"]
    assert skill["metric"] == "test_acc" and not skill["beats_best_baseline"], skill
    assert set(skill["baselines"]) == {"majority", "last_row_logistic"}  # horizon 0: no persistence
    assert metrics["baseline_test"]["majority_acc"] == pytest.approx(skill["baselines"]["majority"])
    assert "skill vs" in result.out and "95% interval" in result.out


def test_seasonal_naive_baseline_with_eval_season(run_cli, tmp_path):
    hours = np.arange(1200)
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"time": pd.date_range("2024-01-01", periods=len(hours), freq="h"),
                          "load": 10 + 3 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.1, len(hours)),
                          "noise": rng.normal(size=len(hours))})
    path = tmp_path / "load.parquet"
    table.to_parquet(path, index=False)
    result = run_cli("data=parquet", f"data.path={path}", "data.target=load", "task=regression",
                     "data.output_steps=3", "data.seq_length=12", "eval.season=24", "model.hidden_size=8",
                     "trainer.max_epochs=1", "progress_bar=false")
    assert result.code == 0, result.err
    baselines = result.metrics()["baseline_test"]
    # yesterday's value at the same hour is off by the noise alone; persistence by the cycle
    assert baselines["seasonal_naive_mae"] < 0.2 < baselines["persistence_mae"]
    assert result.metrics()["skill"]["baselines"]["seasonal_naive"] == pytest.approx(
        baselines["seasonal_naive_mae"])


def test_eval_season_must_be_a_period(run_cli):
    result = run_cli("eval.season=0", "progress_bar=false")
    assert result.code == 2 and "eval.season: 0" in result.err
