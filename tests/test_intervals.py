"""The 95% intervals resample blocks of time: copies of a series, or symbols that move as one,
are not independent evidence, so they must not make an interval narrower or a verdict bolder."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from seqtrain.report.baselines import pooled_skill, skill_report

T = 400  # time steps of the one table


def _losses(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-window losses of a model a little better than a coin, and of a coin: with 400 windows
    the gap is inside the interval."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, T)
    model = np.where(rng.random(T) < 0.56, truth, 1 - truth)
    coin = np.where(rng.random(T) < 0.5, truth, 1 - truth)
    return (model != truth).astype(float), (coin != truth).astype(float)


def _tiled(copies: int, drop: int | None = None) -> dict:
    """``skill_report`` of the table's windows as ``copies`` identical series, series after
    series (as a run's records come); ``drop``: one window of the second series left out."""
    model, coin = (np.tile(x, copies) for x in _losses())
    times = np.tile(np.arange(T) * 60, copies)  # window ends, e.g. seconds
    if drop is not None:
        keep = np.arange(len(times)) != T + drop
        model, coin, times = model[keep], coin[keep], times[keep]
    return skill_report("classification", "test_acc", model, {"coin": coin}, times=times)


def _width(interval: list[float]) -> float:
    return interval[1] - interval[0]


def test_copies_of_one_table_leave_the_interval_as_wide():
    # a bootstrap of windows narrowed it 2.5x with 5 copies and 5.6x with 20
    one = _tiled(1)
    for copies in (5, 20):
        skill = _tiled(copies)
        assert _width(skill["interval"]) == pytest.approx(_width(one["interval"]), rel=0.1)
        assert _width(skill["improvement_interval"]) == pytest.approx(
            _width(one["improvement_interval"]), rel=0.1)
        assert skill["value"] == pytest.approx(one["value"])
        assert (skill["times"], skill["block"], skill["windows"]) == (T, math.ceil(math.sqrt(T)), copies * T)


def test_copies_do_not_make_a_model_beat_the_baseline():
    # one table: the gap is inside the interval; 20 copies of it made a window bootstrap say "beats"
    for copies in (1, 5, 20):
        skill = _tiled(copies)
        assert not skill["beats_best_baseline"]
        assert skill["improvement_interval"][0] < 0 < skill["improvement_interval"][1]


def test_one_series_gives_the_interval_of_consecutive_windows():
    model, coin = _losses()
    before = skill_report("classification", "test_acc", model, {"coin": coin})  # windows in order
    by_time = skill_report("classification", "test_acc", model, {"coin": coin}, times=np.arange(T))
    assert by_time["interval"] == pytest.approx(before["interval"])
    assert by_time["improvement_interval"] == pytest.approx(before["improvement_interval"])
    assert before["block"] == by_time["block"] == math.ceil(math.sqrt(T)) and by_time["times"] == T
    # the blocks follow the times, not the order the windows come in
    order = np.random.default_rng(1).permutation(T)
    shuffled = skill_report("classification", "test_acc", model[order], {"coin": coin[order]}, times=order)
    assert shuffled["interval"] == pytest.approx(by_time["interval"])


def test_a_missing_window_in_one_series_is_handled():
    one, gap = _tiled(1), _tiled(5, drop=100)
    assert (gap["times"], gap["windows"]) == (T, 5 * T - 1)
    model, _ = _losses()
    assert gap["value"] == pytest.approx(1 - (5 * model.sum() - model[100]) / (5 * T - 1))
    assert _width(gap["interval"]) == pytest.approx(_width(one["interval"]), rel=0.1)
    assert not gap["beats_best_baseline"]


def _predictions(symbols: int, steps: int = 2) -> pd.DataFrame:
    """A walk-forward's pooled predictions of regression windows: the same forecasts for every
    symbol, one row per window and forecast step; the model errs as much as persistence (on these
    400 windows a little less, by chance)."""
    rng = np.random.default_rng(8)
    truth = rng.normal(size=(T, steps))
    ends = pd.date_range("2024-01-01", periods=T, freq="h")
    model, persistence = (truth + rng.normal(0, 1.0, truth.shape) for _ in range(2))
    frame = pd.DataFrame({"window_end": ends.repeat(steps), "step": np.tile(np.arange(1, steps + 1), T),
                          "y_true": truth.ravel(), "y_pred": model.ravel(),
                          "baseline_persistence": persistence.ravel()})
    return pd.concat([frame.assign(symbol=f"S{i}") for i in range(symbols)], ignore_index=True)


def test_pooled_walk_forward_interval_does_not_narrow_with_copies():
    # a bootstrap of windows narrowed it 4x with 20 symbols, and said the model beats persistence
    one = pooled_skill("regression", _predictions(1), "symbol")
    assert one["times"] == T and one["windows"] == T and not one["beats_best_baseline"]
    for symbols in (5, 20):
        skill = pooled_skill("regression", _predictions(symbols), "symbol")
        assert skill["times"] == T and skill["windows"] == symbols * T
        assert skill["value"] == pytest.approx(one["value"])
        assert _width(skill["interval"]) == pytest.approx(_width(one["interval"]), rel=0.1)
        assert not skill["beats_best_baseline"]
