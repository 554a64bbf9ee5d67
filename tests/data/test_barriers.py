"""Triple-barrier labels with their end rows (``data.label=triple_barrier``) and weights for
overlapping labels (``data.sample_weight=uniqueness``): López de Prado, AFML ch. 3 and 4."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from seqtrain.data.labels import BarrierSpec, BarrierStream, barrier_labels, ewm_volatility, log_levels
from seqtrain.data.periods import table_period_window_ends
from seqtrain.data.splits import assign_periods
from seqtrain.data.weights import average_uniqueness, time_decay, training_weights
from seqtrain.data.windows import (
    TEST,
    TRAIN,
    VAL,
    WindowSpec,
    chunk_row_numbers,
    last_label_rows,
    segment_rows,
    training_label_rows,
    window_ends,
    window_reach,
)
from seqtrain.engine.module import SeqModule
from tests.data.test_streaming import (
    assert_same_windows,
    data_cfg,
    in_memory,
    streamed,
    unequal_series,
    write,
)
from tests.helpers import make_table

H = 3
HISTORY = np.log([100.0, 101.0, 99.5, 100.5, 100.0])  # rows 0..4; the window ends at row 4


def path_after(steps_in_sigma: list[float], history=HISTORY) -> tuple[np.ndarray, float]:
    """Log prices: ``history`` up to the window's end t, then t+j at ``steps_in_sigma[j-1]`` of
    σ_t (the volatility at t) from the price at t."""
    sigma = ewm_volatility(history, np.array([0, len(history)]), 4)[-1]
    return np.r_[history, history[-1] + np.asarray(steps_in_sigma) * sigma], sigma


BARRIER = BarrierSpec(1.0, 1.0, 4)


def label_of(levels: np.ndarray, barrier=BARRIER, side=None):
    """The label, touch step and move of the window ending at row 4 (its label row is 4 + H)."""
    built = barrier_labels(levels, np.array([0, len(levels)]), H, barrier, side)
    return built.values[4 + H], int(built.touch[4 + H]), float(built.moves[4 + H])


def test_the_volatility_is_pandas_ewm_std_of_past_returns_within_each_series():
    rng = np.random.default_rng(0)
    lengths = [12, 9]
    levels = np.cumsum(rng.normal(0, 0.01, sum(lengths)))
    bounds = np.array([0, 12, 21])
    got = ewm_volatility(levels, bounds, 4)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        expected = pd.Series(np.diff(levels[a:b])).ewm(span=4).std().to_numpy()
        np.testing.assert_allclose(got[a + 1:b], expected, rtol=1e-10, equal_nan=True)
        assert np.isnan(got[a])  # no return at a series' first row, and none from the series before


def test_the_volatility_at_t_reads_rows_at_or_before_t_only():
    levels = np.cumsum(np.random.default_rng(1).normal(0, 0.01, 60))
    bounds = np.array([0, 60])
    before = ewm_volatility(levels, bounds, 5)
    for t in (10, 30, 45):
        changed = levels.copy()
        changed[t + 1:] += np.random.default_rng(t).normal(0, 1, 60 - t - 1)
        np.testing.assert_array_equal(ewm_volatility(changed, bounds, 5)[:t + 1], before[:t + 1])


def test_each_barrier_touched_first_decides_the_class():
    up, sigma = path_after([0.5, 1.2, -3.0])  # the profit barrier at t+2, then a crash
    assert sigma > 0
    assert label_of(up)[:2] == ("up", 2)
    assert label_of(up)[2] == pytest.approx(1.2 * sigma)  # the move to the touch row
    down, _ = path_after([-0.3, -1.5, 5.0])
    assert label_of(down)[:2] == ("down", 2)
    neither, _ = path_after([0.5, -0.5, 0.9])
    assert label_of(neither)[:2] == ("flat", H)  # the vertical barrier at t+h
    assert label_of(neither, BarrierSpec(1.0, 1.0, 4, "sign"))[:2] == ("up", H)  # its return's sign
    wide, _ = path_after([0.5, 1.2, -3.0])
    assert label_of(wide, BarrierSpec(2.0, 1.0, 4))[:2] == ("down", 3)  # a wider profit-take
    assert label_of(up, BarrierSpec(0.0, 1.0, 4))[:2] == ("down", 3)  # profit=0: no profit barrier


def test_a_zero_volatility_puts_both_barriers_at_the_price_and_an_unchanged_price_touches_neither():
    flat = np.log(np.full(5, 100.0))  # σ_t = 0: both barriers at the entry price
    levels = np.r_[flat, np.log([100.0, 100.5, 99.0])]
    assert ewm_volatility(flat, np.array([0, 5]), 4)[-1] == 0
    assert label_of(levels)[:2] == ("up", 2)  # row t+1 is unchanged (reaches both: neither), t+2 rises
    assert label_of(np.r_[flat, np.log([100.0, 100.0, 100.0])])[:2] == ("flat", H)


def test_rows_after_the_touch_row_never_change_the_label():
    levels, _ = path_after([0.4, 1.1, -0.2, 0.7, -2.0])
    label, touch, move = label_of(levels)
    assert (label, touch) == ("up", 2)
    for seed in range(5):
        changed = levels.copy()
        changed[4 + touch + 1:] += np.random.default_rng(seed).normal(0, 0.5, len(levels) - 4 - touch - 1)
        assert label_of(changed) == (label, touch, move)


def test_meta_labels_ask_whether_the_primary_sides_trade_took_profit_first():
    falling, sigma = path_after([-0.4, -1.3, 2.0])
    short = np.full(len(falling), -1.0)
    assert label_of(falling, BarrierSpec(1.0, 1.0, 4, side="side"), short)[:2] == (1, 2)
    assert label_of(falling, BarrierSpec(1.0, 1.0, 4, side="side"), -short)[:2] == (0, 2)  # long: stopped
    assert label_of(falling, BarrierSpec(1.0, 1.0, 4, side="side"), short)[2] == pytest.approx(1.3 * sigma)


def test_purging_keeps_a_training_window_whose_touch_row_is_in_training():
    n, boundary = 20, 12  # rows 0..11 train, 12.. validation
    row_split = np.where(np.arange(n) < boundary, TRAIN, VAL).astype(np.int8)
    bounds = np.array([0, n])
    touch = np.zeros(n, np.int64)
    touch[10 + H], touch[11 + H] = 1, 2  # window 10 ends at 11 (train), window 11 at 13 (validation)
    reach = window_reach(touch, bounds, H, H)
    fixed = window_ends(bounds, row_split, TRAIN, 4, H)
    by_touch = window_ends(bounds, row_split, TRAIN, 4, H, reach=reach)
    assert fixed.max() == boundary - 1 - H  # t + h must be in training
    assert set(by_touch) - set(fixed) == {10}  # its label ends at row 11: kept; window 11's does not
    # the label-row rule (streaming counts windows by it) keeps the same windows
    segments = segment_rows(bounds, row_split)
    rows = np.arange(n)
    counted = last_label_rows(rows, row_split, np.zeros(n, np.int64), segments, TRAIN, 4, H, touch=touch)
    np.testing.assert_array_equal(np.flatnonzero(counted) - H, by_touch)
    assert window_ends(bounds, row_split, VAL, 4, H, reach=reach).min() == boundary


def test_streamed_barrier_labels_and_end_rows_are_the_whole_tables():
    rng = np.random.default_rng(3)
    values = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    codes = rng.integers(0, 3, 300)  # three series mixed within chunks
    barrier = BarrierSpec(1.0, 0.5, 6, "sign")
    stream = BarrierStream(4, "price", barrier)
    parts = [stream.labels(codes[a:a + 37], values[a:a + 37]) for a in range(0, 300, 37)]
    order = np.argsort(codes, kind="stable")
    whole = barrier_labels(log_levels(values[order], "price"), np.r_[0, np.cumsum(np.bincount(codes))],
                           4, barrier)
    for key in ("values", "touch", "moves"):
        got = np.concatenate([getattr(p, key) for p in parts])[order]
        expected = getattr(whole, key)
        if key == "moves":
            np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
        else:
            assert got.tolist() == expected.tolist(), key


@pytest.mark.parametrize("meta", [False, True])
def test_streaming_gives_the_in_memory_triple_barrier_windows(tmp_path, meta):
    frame = unequal_series().assign(side=lambda f: np.where(f["rsi"] > 50, 1.0, -1.0))
    path = write(frame, tmp_path / "t.parquet", 41)
    cfg = data_cfg(path, "data.seq_length=6", "data.horizon=4", "data.label=triple_barrier",
                   "data.barrier.span=5", "data.barrier.profit=0.8", "data.embargo=2", "data.stride=2",
                   *(["data.barrier.side=side"] if meta else []))
    memory, expected = in_memory(cfg, "classification", path)
    stream, got = streamed(cfg, "classification", path)
    assert stream.state.to_dict()["windows"] == memory.state.to_dict()["windows"]
    assert stream.state.to_dict()["class_counts_by_split"] == memory.state.to_dict()["class_counts_by_split"]
    for split in ("train", "val", "test"):
        assert_same_windows(expected[split], got[split])  # the purge by touch rows, labels, moves
    assert "move" in expected["test"]
    assert memory.state.to_dict()["classes"] == ([0, 1] if meta else ["down", "flat", "up"])


def test_uniqueness_on_a_hand_computed_example_with_two_series():
    # series A rows 0..5: labels of windows 0, 1, 2 span rows 1-2, 2-3, 3-4 (h = 2)
    # series B rows 6..11: windows 6 (span 7-9, a touch row 3 ahead) and 10 (span 11)
    ends, reach = np.array([0, 1, 2, 6, 10]), np.array([2, 2, 2, 3, 1])
    # concurrency A: row1 1, row2 2, row3 2, row4 1; B: rows 7-9 1, row 11 1
    expected = [(1 + 1 / 2) / 2, (1 / 2 + 1 / 2) / 2, (1 / 2 + 1) / 2, 1.0, 1.0]
    np.testing.assert_allclose(average_uniqueness(ends, reach, 12), expected)
    # a label of B never shares rows with A, however they line up in time
    series = np.array([0, 0, 0, 1, 1])
    # decay 0.5 in cumulative uniqueness per series: A's x = .75, 1.25, 2.0; B's 1, 2
    np.testing.assert_allclose(time_decay(np.array(expected), series, 0.5),
                               [0.5 + 0.5 * 0.75 / 2, 0.5 + 0.5 * 1.25 / 2, 1.0, 0.75, 1.0])
    # every other row under a stride of h: no two labels share a row
    np.testing.assert_array_equal(average_uniqueness(np.array([0, 2, 4]), np.full(3, 2), 8), 1.0)
    weights, mean = training_weights(ends, reach, series, 12, 1.0)
    assert mean == pytest.approx(np.mean(expected))
    assert weights.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(weights, np.array(expected) / np.mean(expected))


class Constant(nn.Module):
    """Logits from the last input row: a model whose loss depends on each window."""

    output_steps = 1

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 3)

    def forward(self, x, future=None, target=None, mask=None):
        return self.head(x[:, -1]).unsqueeze(1)


@pytest.mark.filterwarnings("ignore:You are trying to")
def test_weights_change_the_training_loss_only():
    torch.manual_seed(0)
    module = SeqModule(Constant(), "classification", {"name": "adam", "lr": 1e-3}, {"name": "none"},
                       n_classes=3, class_weights=[1.0, 2.0, 0.5])
    batch = {"x": torch.randn(6, 4, 2), "y": torch.tensor([0, 1, 2, 0, 1, 2])}
    weighted = {**batch, "weight": torch.tensor([3.0, 0.1, 1.0, 0.2, 2.0, 0.5])}
    out = module(batch)
    each = nn.functional.cross_entropy(out[:, 0], batch["y"], weight=module.class_weights, reduction="none")
    scale = weighted["weight"] * module.class_weights[batch["y"]]
    expected = (each * weighted["weight"]).sum() / scale.sum()
    module.train()
    plain, _ = module._step(batch, "train")
    loss, _ = module._step(weighted, "train")
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, plain)
    torch.testing.assert_close(module._step({**batch, "weight": torch.ones(6)}, "train")[0], plain)
    module.eval()
    for split in ("val", "test"):  # scored unweighted
        torch.testing.assert_close(module._step(weighted, split)[0], module._step(batch, split)[0])


def test_a_triple_barrier_run_with_uniqueness_weights_predicts_its_test_windows_back(run_cli, tmp_path):
    from tests.test_predict import assert_predict_reproduces_the_run

    path = tmp_path / "bars.parquet"
    make_table(400, n_series=2).to_parquet(path, index=False)
    result = run_cli("data=parquet", f"data.path={path}", "data.target=close", "data.group_col=symbol",
                     "data.features=[ret,vol,rsi]", "data.label=triple_barrier", "data.horizon=5",
                     "data.barrier.span=10", "data.seq_length=8", "model.hidden_size=8",
                     "data.sample_weight=uniqueness", "trainer.max_epochs=1", "progress_bar=false",
                     "plots=false")
    assert result.code == 0, result.err
    state = pd.read_json(result.run_dir / "data_state.json", typ="series")
    assert state["label"]["barrier"] == {"profit": 1.0, "loss": 1.0, "span": 10, "vertical": "flat",
                                         "side": None}
    record = pd.read_json(result.run_dir / "metrics.json", typ="series")["sample_weight"]
    # labels end at their touch rows, 1 to 5 rows on: less overlap than 5-row labels (1/5)
    assert record["kind"] == "uniqueness" and 0.2 < record["mean_uniqueness"] < 1
    assert f"mean uniqueness {record['mean_uniqueness']:.3f}" in " ".join(result.out.split())
    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    assert predictions["move"].notna().all()  # the trading view's move to each touch row
    predicted = assert_predict_reproduces_the_run(result.run_dir, tmp_path, path)
    assert {"prob_down", "prob_flat", "prob_up"} <= set(predicted.columns)


def test_no_training_label_of_a_split_by_periods_reads_a_test_row_through_its_volatility():
    """A training window after a test period starts where its label's volatility (5 spans of
    returns) no longer reads the test rows: changing only their returns changes no training label."""
    rng = np.random.default_rng(0)
    n, h, span = 300, 3, 10
    returns = rng.normal(0, 0.01, n)
    roles = np.array([TRAIN, TEST, TRAIN, VAL])
    period = assign_periods(np.arange(n), np.array([0, 100, 150, 250]))
    bounds = np.array([0, n])
    data = OmegaConf.create({"seq_length": 5, "horizon": h, "output_steps": 1, "stride": 1, "eval_stride": 1,
                             "embargo": 2, "pad_short": False, "label": "triple_barrier",
                             "barrier": {"span": span}})
    ends = table_period_window_ends(bounds, period, roles, TRAIN, WindowSpec.from_config(data))
    assert ends[ends > 150].min() == 150 + 2 + 5 * span  # the embargo, then the volatility's rows
    louder = np.where(period == 1, 20 * returns, returns)
    barrier = BarrierSpec(1.0, 1.0, span)
    before, after = (barrier_labels(np.cumsum(r), bounds, h, barrier).values[ends + h]
                     for r in (returns, louder))
    assert before.tolist() == after.tolist()


def test_label_statistics_skip_training_labels_that_read_a_test_row():
    """Rows 0-4 train, 5-6 test, 7-11 train in one series; a move over 2 rows reads its row and
    the 2 before: rows 7 and 8 read test rows. Streamed in chunks of 3 rows of two series, the
    same."""
    training = np.r_[np.ones(5), np.zeros(2), np.ones(5)].astype(bool)
    rows = np.arange(12)
    expected = [True] * 5 + [False] * 4 + [True] * 3
    got = training_label_rows(rows, np.zeros(12, np.int64), training, 2, np.full(1, -1))
    assert got.tolist() == expected
    assert training_label_rows(rows, np.zeros(12, np.int64), training, 0, np.full(1, -1)).tolist() \
        == training.tolist()  # the target itself reads its own row only
    codes = np.tile([0, 1], 12)  # two series interleaved, the second its own copy
    carried, counters, parts = np.full(2, -1), np.zeros(2, np.int64), []
    for lo in range(0, 24, 3):
        chunk = codes[lo:lo + 3]
        number = chunk_row_numbers(chunk, counters)
        parts.append(training_label_rows(number, chunk, training[number], 2, carried))
    assert np.concatenate(parts).tolist() == np.repeat(expected, 2).tolist()
