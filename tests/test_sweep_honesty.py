"""A sweep's verdict on a random walk and on a planted drift: the nested out-of-sample result,
the deflated Sharpe ratio of the best job and the probability of backtest overfitting, end to
end through the CLI at a small size (benchmarks/sweep_honesty.py runs the full-size grid)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from seqtrain.data.synthetic import bar_features, make_bars_table
from seqtrain.errors import SeqtrainError


def test_the_default_bars_are_the_one_in_seven_table_and_zero_informed_is_a_random_walk():
    default, planted, walk = make_bars_table(2, 300), make_bars_table(2, 300, informed=1 / 7), \
        make_bars_table(2, 300, informed=0)
    pd.testing.assert_frame_equal(default, planted)
    # the same draws: the volatility path, base volume and wicks are the walk's, and only the
    # bars after an informed one move differently (their drift); an informed bar trebles volume
    spikes = np.isclose(default["volume"] / walk["volume"], 3.0, rtol=1e-4)
    assert 0.1 < spikes.mean() < 0.2 and set(np.round(default["volume"] / walk["volume"], 3)) <= {1.0, 3.0}
    moved = ~np.isclose(np.log(default["close"]).diff(), np.log(walk["close"]).diff())
    after = pd.Series(spikes).groupby(default["symbol"]).transform(
        lambda s: s.shift(1, fill_value=False).rolling(4, min_periods=1).max()).astype(bool)
    assert not (moved & ~after)[default["time"] > default["time"].min()].any()
    with pytest.raises(SeqtrainError, match="data.generator.informed: 2"):
        make_bars_table(informed=2)
    with pytest.raises(SeqtrainError, match="data.generator.derived: 'yes'"):
        make_bars_table(derived="yes")


def test_bar_features_read_only_rows_at_or_before_their_own():
    bars = make_bars_table(1, 120, derived=False)
    full = bar_features(bars)
    for t in (0, 5, 30, 119):
        pd.testing.assert_frame_equal(bar_features(bars.iloc[:t + 1]), full.iloc[:t + 1])
    # by hand on one bar: open 100, close 101, high 102, low 99.5, volume twice its trailing median
    bar = pd.DataFrame({"open": [100.0, 100.0], "high": [101.0, 102.0], "low": [99.0, 99.5],
                        "close": [100.5, 101.0], "volume": [1000.0, 3000.0]})
    row = bar_features(bar).iloc[1]
    span = np.log(102 / 99.5)
    assert row["ret"] == pytest.approx(np.log(1.01), rel=1e-6)
    assert row["upper_wick"] == pytest.approx(np.log(102 / 101) / span, rel=1e-6)
    assert row["lower_wick"] == pytest.approx(np.log(100 / 99.5) / span, rel=1e-6)
    assert row["volume_ratio"] == pytest.approx(np.log(3000 / 2000), rel=1e-6)  # median of 1000, 3000


# 4 walk-forward jobs of 2 folds on 3 symbols: a rate too low to learn in 3 epochs and one that
# learns, two seeds each, so that with an edge the jobs differ in skill and without one by luck
SWEEP = ["-m", "progress_bar=false", "plots=false", "data.generator.name=bars", "data.generator.derived=true",
         "data.generator.length=800", "data.target=close", "data.label=direction",
         "data.features=[ret,upper_wick,lower_wick,volume_ratio]", "data.target_as_input=false",
         "task=classification", "data.seq_length=8", "model.hidden_size=16", "model.num_layers=1",
         "trainer.max_epochs=3", "trainer.limit_val_batches=2", "eval=walk_forward", "eval.folds=2",
         "eval.test_size=0.15", "eval.pbo_blocks=6", "optim.lr=0.0003,0.03", "seed=0,1"]


def _verdict(run_dir) -> tuple[dict, dict, float]:
    """summary.json, its nested result and chance on the nested test windows: the expected
    accuracy of calls independent of the labels, made as often per class as the nested calls."""
    summary = json.loads((run_dir / "summary.json").read_text())
    nested = summary["nested"]
    read = lambda job: pd.read_parquet(run_dir / str(job) / "predictions.parquet")  # noqa: E731
    windows = pd.concat([read(b["job"]).query(f"fold == {k}") for k, b in enumerate(nested["blocks"])])
    labels, calls = (windows[c].astype(str).value_counts(normalize=True) for c in ("y_true", "y_pred"))
    chance = float(sum(calls.get(c, 0.0) * share for c, share in labels.items()))
    print(f"nested {nested['value']:.3f} {nested['interval']} chance {chance:.3f} "
          f"majority {labels.max():.3f} baselines {nested['baselines']} dsr {summary['dsr']:.3f} "
          f"pbo {summary['pbo']:.3f}")
    return summary, nested, chance


def test_a_sweep_finds_nothing_in_a_random_walk_and_the_planted_drift_in_the_bars(run_cli):
    walk = run_cli(*SWEEP, "data.generator.informed=0")
    assert walk.code == 0, walk.err
    summary, nested, chance = _verdict(walk.run_dir)
    low, high = nested["interval"]
    assert nested["windows"] == 2 * 3 * 119 and len(summary["pbo_jobs"]) == summary["n_trials"] == 4
    assert low < chance < high and low < 0.5 < high  # (0.482, 0.534) around 0.496 when written
    assert summary["dsr"] < 0.95  # 0.11
    assert summary["pbo"] >= 0.3  # 0.80 of 20 splits
    drift = run_cli(*SWEEP)
    assert drift.code == 0, drift.err
    planted, found, _ = _verdict(drift.run_dir)
    assert found["value"] > max(found["baselines"].values()) and found["skill"] > 0  # 0.532 vs 0.501
    assert found["value"] > found["baselines"]["persistence"]
    assert planted["pbo"] < 0.3 and planted["pbo"] < summary["pbo"]  # 0.15
