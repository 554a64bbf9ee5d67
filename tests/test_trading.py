"""The trading view of direction predictions: a book over time (holds from a window's end to its
label time, one calendar shared by all series), costs per change of position, beside
buy-and-hold."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from seqtrain.report.overfitting import probabilistic_sharpe, sharpe_moments
from seqtrain.report.trading import holds, trading_report
from tests.helpers import make_table

DAY = pd.Timedelta(1, "D")


def _frame(moves, predictions, start="2024-01-01", freq="D", horizon=1):
    """One series, a window per bar, its label ``horizon`` bars later."""
    ends = pd.date_range(start, periods=len(moves), freq=freq)
    moves = np.asarray(moves, np.float64)
    return pd.DataFrame({"window_end": ends, "time": ends + horizon * pd.tseries.frequencies.to_offset(freq),
                         "step": 1, "symbol": "A", "move": moves, "y_pred": predictions,
                         "y_true": np.where(moves > 0, "up", np.where(moves < 0, "down", "flat"))})


def _bars(name, days, horizon, stride=1, price=None, calls=None):
    """The windows of a series with bars on ``days`` (days after 2024-01-01), one ending every
    ``stride`` bars, labelled ``horizon`` bars later; ``price`` of the day (default +1% per 4
    days), ``calls`` per bar (default all up)."""
    days = np.asarray(days)
    times = pd.Timestamp("2024-01-01") + days * DAY
    price = 1.01 ** (days / 4) if price is None else price(days)
    ends = np.arange(0, len(days) - horizon, stride)
    move = price[ends + horizon] / price[ends] - 1
    return pd.DataFrame({"window_end": times[ends], "time": times[ends + horizon], "step": 1, "symbol": name,
                         "move": move, "y_pred": "up" if calls is None else np.asarray(calls)[ends],
                         "y_true": np.where(move > 0, "up", "down")})


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
    moves = np.array([0.5, 0.01, 0.5, -0.02, 0.5, 0.03])  # the even windows overlap the odd ones
    frame = _frame(moves, ["up", "up", "up", "flat", "up", "up"], horizon=2)
    report = trading_report(frame, "symbol", horizon=2)
    model = report["model"]
    assert model["periods"] == 3  # windows 5, 3, 1, counted back from the newest
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


def test_a_missing_bar_moves_only_that_series_holds_and_cannot_beat_the_book():
    # two series earning +1% per 4 days: an equal-weight book over days 0..400 makes at most
    # 1.01**100 - 1 = 1.705, with or without a bar missing in one of them
    calls = np.where(np.random.default_rng(0).random(401) > 0.3, "up", "down")
    full, gap = np.arange(401), np.delete(np.arange(401), 200)
    whole = pd.concat([_bars("A", full, 4), _bars("B", full, 4)], ignore_index=True)
    missing = pd.concat([_bars("A", full, 4), _bars("B", gap, 4)], ignore_index=True)
    for frame in (whole, missing):
        model = trading_report(frame, "symbol", 4)["model"]
        assert model["total_return"] == pytest.approx(1.01 ** 100 - 1, rel=1e-9)
        assert model["total_return"] <= 1.01 ** 100 - 1 + 1e-9
    assert trading_report(whole, "symbol", 4)["model"]["periods"] == 100
    before, after = (holds(pd.concat([_bars("A", full, 4, calls=calls), _bars("B", b, 4, calls=calls[b])]),
                           "symbol") for b in (full, gap))
    a_before, a_after = before[before["series"] == "A"], after[after["series"] == "A"]
    pd.testing.assert_frame_equal(a_before.reset_index(drop=True), a_after.reset_index(drop=True))
    b = after[after["series"] == "B"]
    day = ((b["start"] - pd.Timestamp("2024-01-01")) / DAY).to_numpy()
    # counted back from B's newest window (396 -> 400): the hold from day 199 spans the gap (4
    # bars: 201, 202, 203, 204); before it 195 -> 199, ..., 3 -> 7 (no window ends by day 3)
    np.testing.assert_array_equal(day, np.r_[np.arange(3, 200, 4), np.arange(204, 397, 4)])
    assert (b["start"].to_numpy()[1:] == b["end"].to_numpy()[:-1]).all()  # consecutive, never overlapping


def test_stride_h_and_stride_1_trade_the_same_book():
    rng = np.random.default_rng(1)
    prices = np.exp(np.cumsum(rng.normal(0, 0.01, (2, 61)), axis=1))
    calls = rng.choice(["up", "down", "flat"], 61)

    def book(stride):
        frame = pd.concat([_bars(s, np.arange(61), 3, stride, lambda d, p=p: p[d], calls)
                           for s, p in zip("AB", prices, strict=True)], ignore_index=True)
        return trading_report(frame, "symbol", 3, cost_bps=5)

    reports = [book(1), book(3)]
    assert reports[0]["model"] == reports[1]["model"]
    assert reports[0]["buy_and_hold"] == reports[1]["buy_and_hold"]
    assert reports[0]["model"]["periods"] == 20  # holds 0->3 ... 57->60


def test_holds_are_counted_back_from_the_newest_window_as_a_stride_keeps_them():
    # windows end on days 0..55, labels 4 days on; stride 4 keeps those ending on 3, 7, ..., 55
    # (counted back from the newest): every window must give the same book, not one from day 0
    rng = np.random.default_rng(3)
    price = np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    calls = rng.choice(["up", "down", "flat"], 60)

    def windows(ends):
        times = pd.Timestamp("2024-01-01") + ends * DAY
        move = price[ends + 4] / price[ends] - 1
        return pd.DataFrame({"window_end": times, "time": times + 4 * DAY, "step": 1, "symbol": "A",
                             "move": move, "y_pred": calls[ends], "y_true": np.where(move > 0, "up", "down")})

    every, strided = (trading_report(windows(ends), "symbol", 4, cost_bps=5)
                      for ends in (np.arange(0, 56), np.arange(55 % 4, 56, 4)))
    assert every["model"] == strided["model"] and every["buy_and_hold"] == strided["buy_and_hold"]
    assert every["equity"] == strided["equity"]
    start = holds(windows(np.arange(0, 56)), "symbol")["start"]
    assert ((start - pd.Timestamp("2024-01-01")) / DAY).tolist() == list(range(3, 56, 4))


def _called(name, days, price, right, call=None):
    """A series with bars on ``days``, a window per bar labelled 4 bars on; its call is right
    where ``right`` (by day), else wrong, or ``call`` throughout."""
    frame = _bars(name, days, 4, price=lambda d: price[d])
    wrong = np.where(frame["y_true"] == "up", "down", "up")
    right = right[((frame["window_end"] - pd.Timestamp("2024-01-01")) / DAY).to_numpy(np.int64)]
    return frame.assign(y_pred=call or np.where(right, frame["y_true"], wrong))


def test_series_off_phase_or_out_of_the_market_cannot_sharpen_the_book():
    # A: daily, 4-day holds, 58% right. Three series listed 1, 2, 3 days later that always call
    # flat make the calendar daily and dilute A's bets, but cannot make them more: the Sharpe
    # ratio is measured every 4 days (the median hold), not per calendar interval
    rng = np.random.default_rng(6)
    price = np.exp(np.cumsum(rng.normal(0, 0.01, 2010)))
    right = rng.random(2010) < 0.58
    alone = trading_report(_called("A", np.arange(2004), price, right), "symbol", 4)
    flat = [_called(s, np.arange(k, 2004 + k), price, right, "flat") for k, s in enumerate("BCD", 1)]
    diluted = trading_report(pd.concat([_called("A", np.arange(2004), price, right), *flat]), "symbol", 4)
    assert alone["per_year"] == diluted["per_year"] == pytest.approx(365.25 / 4)
    assert alone["model"]["periods"] == diluted["model"]["periods"] == 500
    # diluted, A's bets are rebalanced daily against cash on the split path: a drag of second
    # order (2-9% of this Sharpe ratio over seeds 0-7), never a gain; the calendar made it 1.9x
    sharpe = alone["model"]["sharpe_annualised"]
    assert 0.88 * sharpe < diluted["model"]["sharpe_annualised"] <= sharpe
    # a missing bar in B puts its holds off A's phase: the grid, and per_year, stay those of 4 days
    gap = pd.concat([_called("A", np.arange(2004), price, right),
                     _called("B", np.delete(np.arange(2004), 1000), price, right)])
    pair = trading_report(gap, "symbol", 4)
    assert pair["per_year"] == pytest.approx(365.25 / 4) and pair["model"]["periods"] == 500


def test_a_book_without_variance_has_no_sharpe_ratio():
    # +1% every 4 days in both series, one of them missing a bar: the book grows at a constant
    # rate, its period returns differ only in their last bits
    full, gap = np.arange(401), np.delete(np.arange(401), 200)
    for frame in (_bars("A", full, 4), pd.concat([_bars("A", full, 4), _bars("B", gap, 4)])):
        model = trading_report(frame, "symbol", 4)["model"]
        assert model["sharpe_annualised"] is None and model["sharpe_interval"] is None
        assert model["mean_return"] == pytest.approx(0.01)


def test_a_stride_that_skips_windows_keeps_its_holds_and_says_how_long_it_held():
    # horizon 2, a window every 4 days: holds 0->2, 4->6, ..., 36->38, out in between
    rng = np.random.default_rng(2)
    price = np.exp(np.cumsum(rng.normal(0, 0.01, 41)))
    report = trading_report(_bars("A", np.arange(41), 2, 4, lambda d: price[d]), "symbol", 2)
    model = report["model"]
    assert model["time_in_market"] == pytest.approx(20 / 38)  # 10 holds of 2 days over 38 days
    assert model["periods"] == 19 and model["holds"] == 10  # grid 0, 2, 4, ..., 38
    held = price[np.arange(2, 40, 4)] / price[np.arange(0, 40, 4)]
    assert model["total_return"] == pytest.approx(held.prod() - 1)
    # per_year from the grid of the median hold: 2 days
    assert report["per_year"] == pytest.approx(365.25 / 2)
    returns = np.zeros(19)
    returns[::2] = held - 1  # out of the market every other interval
    sharpe = returns.mean() / returns.std(ddof=1) * np.sqrt(365.25 / 2)
    assert model["sharpe_annualised"] == pytest.approx(sharpe)


def test_drawdown_counts_a_loss_in_the_first_period():
    report = trading_report(_frame([-0.10, -0.10, 0.30], ["up", "up", "up"]), "symbol", horizon=1)
    assert report["model"]["max_drawdown"] == pytest.approx(1 - 0.9 * 0.9)  # 0.19 from the start of 1
    assert report["equity"]["model"][:3] == pytest.approx([1.0, 0.9, 0.81])


def test_the_hit_rate_compares_calls_with_their_labels_as_accuracy_does():
    frame = _frame([0.001, 0.02, -0.03, 0.01], ["up", "up", "down", "flat"])
    frame["y_true"] = ["flat", "up", "down", "up"]  # a move inside the dead zone is labelled flat
    model = trading_report(frame, "symbol", horizon=1)["model"]
    assert model["hit_rate"] == pytest.approx(2 / 3)  # the flat call is no call


def test_a_model_always_up_is_buy_and_hold_even_across_gaps():
    # a stride of 4 with horizon 2 leaves a gap after every hold, and B's windows stop for a
    # fold boundary: out of the market costs the exit and the re-entry in both books alike
    rng = np.random.default_rng(4)
    price = np.exp(np.cumsum(rng.normal(0, 0.01, 81)))
    days = np.r_[np.arange(0, 30), np.arange(40, 81)]
    frame = pd.concat([_bars("A", np.arange(81), 2, 4, lambda d: price[d]),
                       _bars("B", days, 2, 1, lambda d: price[d] * 1.001 ** d)], ignore_index=True)
    frame = frame[~((frame["window_end"] < pd.Timestamp("2024-01-01") + 30 * DAY)
                    & (frame["time"] > pd.Timestamp("2024-01-01") + 30 * DAY))]  # purged at the boundary
    report = trading_report(frame, "symbol", 2, cost_bps=10)
    assert report["model"] == report["buy_and_hold"]
    assert report["equity"]["model"] == report["equity"]["buy_and_hold"]
    assert report["model"]["total_return"] < trading_report(frame, "symbol", 2)["model"]["total_return"]


@pytest.mark.parametrize("gain", [0.01, 0.5])
def test_holds_off_phase_gain_from_rebalancing_within_the_stated_bound(gain):
    # A holds days [0,1), [1,10); B [0,9), [9,10); every hold +gain. Each series compounds to
    # (1 + gain)**2; the book's per-interval rebalance on the time-split path may add at most
    # (max f - min f)**2 / (8 min f**2) to the log growth of each interval (f: the growths there)
    rows = [("A", 0, 1), ("A", 1, 10), ("B", 0, 9), ("B", 9, 10)]
    start = pd.Timestamp("2024-01-01")
    frame = pd.DataFrame([(s, start + a * DAY, start + b * DAY, gain) for s, a, b in rows],
                         columns=["symbol", "window_end", "time", "move"]).assign(y_pred="up", y_true="up")
    total = trading_report(frame, "symbol", 1)["model"]["total_return"]
    g = 1 + gain
    growths = [(g, g ** (1 / 9)), (g ** (8 / 9), g ** (8 / 9)), (g ** (1 / 9), g)]
    bound = sum((max(f) - min(f)) ** 2 / (8 * min(f) ** 2) for f in growths)
    assert g ** 2 <= 1 + total <= g ** 2 * np.exp(bound)
    if gain == 0.01:
        assert total == pytest.approx(0.020120, abs=1e-6)


def _three_series() -> pd.DataFrame:
    """Horizon 2 bars, daily, hand-made moves; C has no bar on day 3. The windows marked
    'skipped' overlap a hold and are not traded (their moves would show if they were): counted
    back from each series' newest window, each earlier hold is the latest window whose label is
    at or before the next hold's start."""
    rows = [  # series, end day, label day, call, move, truth
        ("A", 0, 2, "up", 0.21, "up"), ("A", 1, 3, "up", 9.0, "up"),  # skipped
        ("A", 2, 4, "down", 0.19, "up"), ("A", 4, 6, "flat", -0.19, "down"),
        ("B", 1, 3, "down", -0.44, "down"), ("B", 2, 4, "up", 5.0, "up"),  # skipped
        ("B", 3, 5, "up", -0.19, "down"),
        ("C", 0, 2, "up", 0.44, "up"), ("C", 1, 4, "up", 9.0, "up"),  # skipped
        ("C", 2, 5, "up", 0.331, "up"),
    ]
    frame = pd.DataFrame(rows, columns=["symbol", "end", "label", "y_pred", "move", "y_true"])
    start = pd.Timestamp("2024-01-01")
    return frame.assign(window_end=start + frame.pop("end") * DAY, time=start + frame.pop("label") * DAY,
                        step=1)


def test_a_three_series_book_by_hand():
    # Holds: A [0,2) long +21%, [2,4) short a +19% move, [4,6) flat; B [1,3) short a -44% move,
    # [3,5) long -19%; C [0,2) long +44%, [2,5) long +33.1% (3 days: its bar of day 3 is missing).
    # Calendar 0,1,...,6: six one-day intervals. Split geometrically by time, a hold's daily
    # growth is: A 1.21**.5 = 1.1, then 0.81**.5 = 0.9 (short), then 1; B 1.44**.5 = 1.2 (short),
    # then 0.81**.5 = 0.9; C 1.2, then 1.331**(1/3) = 1.1.
    # Active: A days 0-6, B 1-5, C 0-5. Equal weight over the active series:
    #   [0,1) A +.1, C +.2              -> .3/2 = .15
    #   [1,2) A +.1, B +.2, C +.2       -> .5/3
    #   [2,3) A -.1, B +.2, C +.1       -> .2/3
    #   [3,4) A -.1, B -.1, C +.1       -> -.1/3
    #   [4,5) A 0 (flat), B -.1, C +.1  -> 0
    #   [5,6) A 0, alone                -> 0
    report = trading_report(_three_series(), "symbol", 2)
    model = report["model"]
    returns = np.array([0.15, 0.5 / 3, 0.2 / 3, -0.1 / 3, 0.0, 0.0])
    equity = np.r_[1, np.cumprod(1 + returns)]
    assert model["total_return"] == pytest.approx(1.15 * 7 / 6 * 16 / 15 * 29 / 30 - 1)
    assert report["equity"]["model"] == pytest.approx(equity.tolist())  # from 1 at day 0
    # the Sharpe ratio's grid: every 2 days (the median hold), the equity of days 0, 2, 4, 6
    on_grid = equity[[0, 2, 4, 6]]
    assert model["mean_return"] == pytest.approx(np.mean(on_grid[1:] / on_grid[:-1] - 1))
    assert model["periods"] == 3 and model["holds"] == 7
    assert report["per_year"] == pytest.approx(365.25 / 2)
    assert model["max_drawdown"] == pytest.approx(1 / 30)  # the fall on day 3
    # held 1, 1, 1, 1, 2/3 (A flat), 0 (A flat alone) of each day
    assert model["time_in_market"] == pytest.approx((4 + 2 / 3) / 6)
    # up/down calls: A up hit, down miss; B down hit, up miss; C two hits (A's flat is no call)
    assert model["hit_rate"] == pytest.approx(4 / 6)
    # position changes over the active series: day 0 A and C enter (2/2); day 1 B enters (1/3);
    # day 2 A flips (2/3); day 3 B flips (2/3); day 4 A goes flat (1/3); day 5 none; per period
    # of the grid (3 over the 6 days)
    assert model["turnover"] == pytest.approx((1 + 1 / 3 + 2 / 3 + 2 / 3 + 1 / 3) / 3)
    # buy-and-hold: +1 on the same holds, one entry each; its hits are the holds labelled up
    hold = report["buy_and_hold"]
    assert hold["hit_rate"] == pytest.approx(4 / 7) and hold["turnover"] == pytest.approx((1 + 1 / 3) / 3)
    daily_long = {"A": [1.21 ** .5] * 2 + [1.19 ** .5] * 2 + [0.81 ** .5] * 2,
                  "B": [0.56 ** .5] * 2 + [0.81 ** .5] * 2, "C": [1.2, 1.2] + [1.331 ** (1 / 3)] * 3}
    by_day = [[daily_long["A"][d], *([daily_long["B"][d - 1]] if 1 <= d <= 4 else []),
               *([daily_long["C"][d]] if d <= 4 else [])] for d in range(6)]
    hold_returns = [np.mean(day) - 1 for day in by_day]
    assert hold["total_return"] == pytest.approx(np.prod(1 + np.array(hold_returns)) - 1)


def test_costs_are_charged_in_a_hold_first_interval():
    # the same book at 100 bp per unit of position change (0.01): a hold's first day carries its
    # cost, so its growth over the hold is (growth before costs) - change * 0.01
    model = trading_report(_three_series(), "symbol", 2, cost_bps=100)["model"]
    c = 0.01
    days = [
        (1.1 * (1.21 - c) / 1.21 - 1 + 1.2 * (1.44 - c) / 1.44 - 1) / 2,   # A, C enter
        (0.1 + 1.2 * (1.44 - c) / 1.44 - 1 + 0.2) / 3,                    # B enters short
        (0.9 * (0.81 - 2 * c) / 0.81 - 1 + 0.2 + 0.1) / 3,                # A flips; C stays long
        (-0.1 + 0.9 * (0.81 - 2 * c) / 0.81 - 1 + 0.1) / 3,               # B flips
        (-c - 0.1 + 0.1) / 3,                                             # A goes flat
        0.0,
    ]
    assert model["total_return"] == pytest.approx(np.prod(1 + np.array(days)) - 1)


def test_the_psr_of_many_series_is_measured_on_the_books_grid_returns():
    # three series, one missing a bar (off the others' phase from then on): the calendar is
    # finer than the grid of 4-day periods, and the PSR is that of the grid's returns, which
    # trading.parquet holds (period by period), not of the calendar's intervals
    rng = np.random.default_rng(4)
    price = np.exp(np.cumsum(rng.normal(0, 0.01, 420)))
    right = rng.random(420) < 0.55
    full = np.arange(401)
    frame = pd.concat([_called("A", full, price, right), _called("B", np.delete(full, 150), price, right),
                       _called("C", full, price, ~right)], ignore_index=True)
    report = trading_report(frame, "symbol", 4)
    model, periods = report["model"], report["periods"]
    assert list(periods) == ["period_start", "period_end", "model", "buy_and_hold"]
    assert len(periods) == model["periods"] == 100
    assert ((periods["period_end"] - periods["period_start"]) == 4 * DAY).all()
    assert model["mean_return"] == pytest.approx(periods["model"].mean())
    moments = sharpe_moments(periods["model"].to_numpy())
    assert model["psr"] == pytest.approx(probabilistic_sharpe(**moments))
    annualised = model["sharpe_per_period"] * np.sqrt(report["per_year"])
    assert annualised == pytest.approx(model["sharpe_annualised"])
    equity = np.asarray(report["equity"]["model"])
    calendar = equity[1:] / equity[:-1] - 1
    assert len(calendar) > len(periods)  # the missing bar split the calendar
    assert probabilistic_sharpe(**sharpe_moments(calendar)) != pytest.approx(model["psr"])
    hold = sharpe_moments(periods["buy_and_hold"].to_numpy())
    assert report["buy_and_hold"]["psr"] == pytest.approx(probabilistic_sharpe(**hold))


def test_meta_label_hit_rates_count_the_trades_taken_that_took_profit():
    """Calls of 1 take the primary's trade, 0 pass; buy-and-hold takes every trade."""
    frame = pd.DataFrame({"window_end": np.arange(8) * 2, "time": np.arange(8) * 2 + 2, "step": 1,
                          "y_pred": [1, 0, 1, 1, 0, 1, 0, 1], "y_true": [1, 0, 1, 0, 1, 1, 0, 1],
                          "move": [0.01, -0.01, 0.02, -0.01, 0.01, 0.01, -0.02, 0.01]})
    report = trading_report(frame, None, 2)
    assert report["model"]["hit_rate"] == pytest.approx(4 / 5)  # 5 taken, 4 reached profit
    assert report["buy_and_hold"]["hit_rate"] == pytest.approx(5 / 8)
