"""What trading the predicted direction would have earned: a signal-quality view, not a
backtester (no fills, slippage model, position sizing or capital constraints).

A book over time, not over row positions:

- **Holds.** A window's call is held from its end (``window_end``) to its label row (``time``):
  +1 after ``up``, -1 after ``down``, 0 after ``flat``. In each series the newest window is a
  hold, and each earlier hold is the latest window whose label time is at or before the next
  hold's start (chosen by time, so a missing bar, a halt or a late listing moves that series'
  holds only; counted back from the newest window, as ``data.eval_stride`` keeps windows, so a
  stride of h trades the very holds of stride 1, and any stride the holds its windows allow).
  Windows whose label lies beyond the table are left out.
- **Calendar.** The sorted distinct hold starts and ends of all series are one calendar of
  rebalancing times, on which the book's equity, total return, drawdown and time in market are
  measured.
- **Grid.** The calendar grows finer with every series whose holds are off the others' phase (a
  missing bar, a late listing), and the pieces of one hold split over it are one bet, not
  several. So the mean return, the Sharpe ratio with its interval and turnover are per period of
  a regular grid: from the calendar's first time every median hold length, the equity at or
  before each grid time. ``periods`` counts the grid's periods and ``per_year`` (the Sharpe's
  annualisation) is a year over the median hold; series that do not trade, or trade off phase,
  cannot sharpen the ratio.
- **Book.** A series is *active* from its first hold's start to its last hold's end; in each
  interval the book is an equal weight over the active series, and an active series that is not
  holding (a flat call, or between two holds where a stride skipped windows) earns 0 there. A
  hold that spans several intervals (holds not aligned across series) has its return split over
  them geometrically in proportion to elapsed time (the time column's own units when numeric), so
  that a series' intervals compound to exactly its hold's return; the book is exact when holds
  align. Otherwise rebalancing to equal weights inside a hold, on that assumed path, is an
  approximation of second order: in each interval the book's log growth exceeds the mean log
  growth of its series by between 0 and (max f - min f)² / (8 min f²), f the series' growths
  there (Jensen's inequality for the log): two series of +1% holds off phase by a day make
  0.020120 instead of 1.01² - 1 = 0.020100; an active series out of the market (cash) makes it a
  drag of the same order. A short through a more than 100% rise books its loss in the hold's
  last interval.
- **Costs.** ``cost_bps`` per unit of position change, charged in the hold's first interval; a
  gap between two holds (a stride that skips windows, a fold boundary) is time out of the market
  and costs the exit and the re-entry, in both books, so identical positions cost the same. The
  last position is marked, not closed. Rebalancing between series is free.
- **Buy-and-hold** is +1 on the same holds, under the same cost rule.
- **Sizing.** ``sign`` (the default) holds the call's +1/-1/0; ``probability`` holds
  ``p(up) - p(down)`` (the run's probabilities, temperature-scaled when it was calibrated), a
  position in [-1, 1], with the sign rule's book reported beside it (``sign``).

**Significance.** Beside the annualised Sharpe ratio: the Sharpe ratio per period, the grid
returns' skew and kurtosis and the probabilistic Sharpe ratio against 0 (``psr``, see
``overfitting``); the grid returns themselves are ``periods`` (``trading.parquet``).

``time_in_market`` is the share of the calendar's span during which the book held a position
(the active series' mean absolute position, weighted by time); ``hit_rate`` the share of the
traded up/down calls whose label (``y_true``) is that call, the same comparison as accuracy
(meta-labels: the share of the trades taken that reached profit first).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from seqtrain.report.baselines import block_resample_index
from seqtrain.report.overfitting import probabilistic_sharpe, sharpe_moments

POSITIONS = {"up": 1.0, "down": -1.0, "flat": 0.0,
             1: 1.0, 0: 0.0}  # meta-labels: take the primary side's trade (its return is the move), or pass
YEAR_NS = 365.25 * 86_400e9


def holds(predictions: pd.DataFrame, group_col: str | None) -> pd.DataFrame:
    """The windows the trading view trades, one row per series and hold, in time order:
    ``series``, ``start`` (window end), ``end`` (label time), ``call`` and ``truth`` (``y_true``
    where given), ``move``. A series' newest window is a hold, and each earlier hold the latest
    window whose label time is at or before the next hold's start. ``size``: ``p(up) - p(down)``,
    a class the run (or a walk-forward fold) does not have at probability 0."""
    frame = predictions[predictions["step"] == 1] if "step" in predictions else predictions
    frame = frame[frame["move"].notna() & frame["time"].notna()]
    frame = frame.assign(window_end=_naive(frame["window_end"]), time=_naive(frame["time"]))
    series = frame[group_col].to_numpy() if group_col else np.zeros(len(frame), np.int64)
    codes = pd.factorize(series, sort=True)[0]
    start, end = _instants(frame["window_end"]), _instants(frame["time"])
    keep = end > start
    order = np.lexsort((start[keep], codes[keep]))
    rows = np.flatnonzero(keep)[order]
    chosen = rows[_latest_before(codes[rows], start[rows], end[rows])]
    return pd.DataFrame({"series": series[chosen], "start": frame["window_end"].to_numpy()[chosen],
                         "end": frame["time"].to_numpy()[chosen], "call": frame["y_pred"].to_numpy()[chosen],
                         "truth": frame["y_true"].to_numpy()[chosen] if "y_true" in frame else None,
                         "move": frame["move"].to_numpy(np.float64)[chosen],
                         "size": (_probability(frame, "up") - _probability(frame, "down"))[chosen]})


def _probability(frame: pd.DataFrame, name: str) -> np.ndarray:
    column = frame.get(f"prob_{name}")
    return np.zeros(len(frame)) if column is None else column.fillna(0.0).to_numpy(np.float64)


def trading_report(predictions: pd.DataFrame, group_col: str | None, horizon: int,
                   cost_bps: float = 0.0, sizing: str = "sign") -> dict | None:
    """Mean return per period (of the grid), total return, annualised Sharpe with its interval,
    hit rate, time in market, turnover and maximum drawdown of the book that trades the predicted
    direction, beside buy-and-hold on the same holds; None without realised moves (labels other
    than direction and triple_barrier). ``horizon`` (rows) is reported; the holds' times come from
    the frame. ``sizing``: sign or probability (see the module docstring)."""
    if "move" not in predictions or predictions["move"].isna().all():
        return None
    chosen = holds(predictions, group_col)
    if chosen.empty:
        return None
    start, end = _instants(chosen["start"]), _instants(chosen["end"])
    points = np.unique(np.r_[start, end])
    datetimes = pd.api.types.is_datetime64_any_dtype(chosen["start"])
    step = np.median(end - start)  # the typical hold: the grid's period
    step = max(int(round(step)), 1) if np.issubdtype(points.dtype, np.integer) else float(step)
    grid, offsets = _grid(points, step)
    per_year = YEAR_NS / step if datetimes else None

    def book(policy: str) -> tuple[dict, np.ndarray, np.ndarray]:
        return _stats(_book(chosen, points, cost_bps, policy), chosen, grid, step, per_year, policy)

    by_probability = sizing == "probability"
    model, model_equity, model_returns = book("probability" if by_probability else "model")
    hold, hold_equity, hold_returns = book("hold")
    beside = {"sign": book("model")[0]} if by_probability else {}  # the sign rule on the same holds
    times = pd.to_datetime(points) if datetimes else points
    on_grid = (offsets + points[0]).astype(points.dtype)
    on_grid = pd.to_datetime(on_grid) if datetimes else on_grid
    return {"cost_bps": cost_bps, "horizon_rows": horizon, "per_year": per_year, "sizing": sizing,
            "model": model, "buy_and_hold": hold, **beside,
            "equity": {"time": [str(t) for t in times], "model": model_equity.tolist(),
                       "buy_and_hold": hold_equity.tolist()},
            "periods": pd.DataFrame({"period_start": on_grid[:-1], "period_end": on_grid[1:],
                                     "model": model_returns, "buy_and_hold": hold_returns})}


def book_returns(trading: dict, zone: str | None = None) -> pd.DataFrame:
    """The books' return per grid period, as ``trading.parquet`` holds them: ``period_start``
    and ``period_end`` (grid times; datetimes back in the table's ``zone``, as in
    predictions.parquet), ``model`` and ``buy_and_hold``. The Sharpe ratios and the PSR are
    measured on these returns, and a sweep lines its jobs up by their periods."""
    frame = trading["periods"]
    if zone is None:
        return frame
    columns = [c for c in ("period_start", "period_end") if pd.api.types.is_datetime64_dtype(frame[c])]
    return frame.assign(**{c: frame[c].dt.tz_localize("UTC").dt.tz_convert(zone) for c in columns})


def in_metrics(trading: dict | None) -> dict | None:
    """The trading view as ``metrics.json`` holds it: without the equity curve and the periods."""
    return {k: v for k, v in trading.items() if k not in ("equity", "periods")} if trading else None


def _naive(column: pd.Series) -> pd.Series:
    """Zoned times as UTC instants without a zone (the predictions' own convention)."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC").dt.tz_localize(None)
    return column


def _instants(column: pd.Series) -> np.ndarray:
    """Times as exact numbers: nanoseconds (int64) for datetimes, the values otherwise."""
    values = column.to_numpy()
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[ns]").astype(np.int64)
    return values


def _latest_before(codes: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Positions of the holds in windows sorted by series and start: per series the newest
    window, then each earlier hold the latest window whose label time is at or before the next
    hold's start. Counted back from the newest window, as ``data.eval_stride`` keeps windows, so
    that a stride trades the holds that every window would."""
    chosen = []
    edges = np.r_[0, np.flatnonzero(np.diff(codes)) + 1, len(codes)]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        floor = np.minimum.accumulate(end[lo:hi][::-1])[::-1]  # earliest label from each window on
        held, i = [], hi - 1
        while i >= lo:  # the next i is earlier: every window from i on ends after start[i]
            held.append(i)
            i = lo + np.searchsorted(floor, start[i], "right") - 1
        chosen.extend(held[::-1])
    return np.asarray(chosen, np.int64)


def _positions(chosen: pd.DataFrame, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """Each hold's position (the call's, its ``size`` with probability sizing, or +1 for
    buy-and-hold) and its change from the series' previous hold. One rule for every book: a gap
    between two holds (a stride or a fold boundary) is time out of the market, so it costs the
    exit and the re-entry; identical positions then cost the same."""
    first = ~pd.Series(chosen["series"]).duplicated().to_numpy()
    if policy == "hold":
        held = np.ones(len(chosen))
    elif policy == "probability":
        held = chosen["size"].fillna(0.0).to_numpy(np.float64)
    else:
        held = chosen["call"].map(POSITIONS).fillna(0.0).to_numpy(np.float64)
    before = np.where(first, 0.0, np.r_[0.0, held[:-1]])
    start, end = _instants(chosen["start"]), _instants(chosen["end"])
    joined = first | (start == np.r_[start[:1], end[:-1]])
    return held, np.where(joined, np.abs(held - before), np.abs(held) + np.abs(before))


def _book(chosen: pd.DataFrame, points: np.ndarray, cost_bps: float, policy: str) -> dict:
    """Per calendar interval: the book's return, mean absolute position and turnover over the
    active series, and the interval's length."""
    held, change = _positions(chosen, policy)
    start, end = _instants(chosen["start"]), _instants(chosen["end"])
    n = len(points) - 1
    length = np.diff(points).astype(np.float64)
    first, stop = np.searchsorted(points, start), np.searchsorted(points, end)
    spans = stop - first  # intervals each hold covers
    hold_of = np.repeat(np.arange(len(chosen)), spans)
    interval = first[hold_of] + np.arange(len(hold_of)) - np.repeat(np.cumsum(spans) - spans, spans)
    base = 1.0 + held * chosen["move"].to_numpy(np.float64)  # the hold's growth before costs
    growth = base - change * cost_bps / 1e4
    share = length[interval] / (end - start).astype(np.float64)[hold_of]
    fine = base[hold_of] > 0
    factor = np.where(fine, np.abs(base[hold_of]) ** share, 1.0)
    opening, closing = interval == first[hold_of], interval == stop[hold_of] - 1
    factor = np.where(fine & opening, factor * growth[hold_of] / np.where(fine, base[hold_of], 1.0), factor)
    factor = np.where(~fine & closing, growth[hold_of], factor)
    codes = pd.factorize(chosen["series"])[0]
    active = np.zeros(n + 1)
    np.add.at(active, first[_firsts(codes)], 1.0)
    np.add.at(active, stop[_lasts(codes)], -1.0)
    active = np.cumsum(active)[:n]
    exposure = np.cumsum(np.bincount(first, np.abs(held), n + 1) - np.bincount(stop, np.abs(held), n + 1))[:n]
    weight = np.where(active > 0, 1.0 / np.where(active > 0, active, 1.0), 0.0)
    return {"returns": np.bincount(interval, factor - 1.0, n) * weight, "exposure": exposure * weight,
            "turnover": np.bincount(first, change, n + 1)[:n] * weight, "length": length}


def _firsts(codes: np.ndarray) -> np.ndarray:
    return np.flatnonzero(~pd.Series(codes).duplicated().to_numpy())


def _lasts(codes: np.ndarray) -> np.ndarray:
    return np.flatnonzero(~pd.Series(codes).duplicated(keep="last").to_numpy())


def _stats(book: dict, chosen: pd.DataFrame, grid: np.ndarray, step: float, per_year: float | None,
           policy: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """The book's statistics, its equity at each calendar time (1 at the first) and its return
    per grid period. Total return, drawdown and time in market come from the calendar; the mean,
    the Sharpe ratio (with its PSR) and turnover per period from the equity sampled on the grid
    (``_grid``)."""
    equity = np.r_[1.0, np.cumprod(1 + book["returns"])]
    drawdown = 1 - equity / np.maximum.accumulate(equity)  # from the starting 1
    sampled = equity[grid]
    returns = np.divide(sampled[1:], sampled[:-1], out=np.ones(len(grid) - 1), where=sampled[:-1] != 0) - 1
    std = returns.std(ddof=1) if len(returns) > 1 else 0.0
    sharpe = returns.mean() / std * math.sqrt(per_year) if per_year and _varies(returns.mean(), std) else None
    interval = _sharpe_interval(returns, per_year) if sharpe is not None else None
    span = book["length"].sum()
    return {"mean_return": float(returns.mean()), "total_return": float(equity[-1] - 1),
            "sharpe_annualised": float(sharpe) if sharpe is not None else None,
            "sharpe_interval": interval, **_significance(returns), "max_drawdown": float(drawdown.max()),
            "hit_rate": _hit_rate(chosen, policy),
            "time_in_market": float((book["exposure"] * book["length"]).sum() / span),
            "turnover": float(book["turnover"].sum() / (span / step)), "periods": len(returns),
            "holds": len(chosen)}, equity, returns


def _significance(returns: np.ndarray) -> dict:
    """The Sharpe ratio per period (not annualised), the returns' skew and kurtosis, and the
    probabilistic Sharpe ratio against 0 (``overfitting.probabilistic_sharpe``): the probability
    that the true Sharpe ratio is above 0 given this record's length and shape."""
    moments = sharpe_moments(returns)
    if moments is None:
        return {"sharpe_per_period": None, "skew": None, "kurtosis": None, "psr": None}
    return {"sharpe_per_period": moments["sharpe"], "skew": moments["skew"], "kurtosis": moments["kurtosis"],
            "psr": probabilistic_sharpe(moments["sharpe"], moments["periods"], moments["skew"],
                                        moments["kurtosis"])}


def _hit_rate(chosen: pd.DataFrame, policy: str) -> float | None:
    """The share of the traded up/down calls (buy-and-hold: every hold, called up) whose label
    is that call; for meta-labels (0/1) the share of the trades taken (a call of 1; buy-and-hold:
    every trade) that reached profit first (a label of 1). None without labels."""
    truth = chosen["truth"]
    known = truth.dropna()
    meta = len(known) > 0 and known.isin([0, 1]).all()
    calls = pd.Series(1 if meta else "up", index=chosen.index) if policy == "hold" else chosen["call"]
    made = calls.isin([1] if meta else ["up", "down"]).to_numpy() & truth.notna().to_numpy()
    return float((calls[made] == truth[made]).mean()) if made.any() else None


def _sharpe_interval(returns: np.ndarray, per_year: float, seed: int = 0) -> list[float] | None:
    """95% interval of the annualised Sharpe ratio from a moving-block bootstrap of the
    grid's period returns (blocks of √n periods): a short record's Sharpe is mostly
    noise, and this says how much."""
    n = len(returns)
    if n < 4:
        return None
    sample = returns[block_resample_index(n, math.ceil(math.sqrt(n)), seed)]
    mean, std = sample.mean(axis=1), sample.std(axis=1, ddof=1)
    varies = _varies(mean, std)
    sharpe = np.where(varies, mean / np.where(varies, std, 1) * math.sqrt(per_year), 0.0)
    low, high = np.percentile(sharpe, [2.5, 97.5])
    return [float(low), float(high)]


def _varies(mean, std):
    """Whether returns vary beyond float noise (a constant book's split returns differ in their
    last bits, which would give a Sharpe ratio of 1e15)."""
    return std > 1e-12 * np.maximum(1.0, np.abs(mean))


def _grid(points: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Calendar positions of the equity at or before each time of a regular grid, from the
    first calendar time every ``step`` (the median hold) up to the last, and the grid's times as
    offsets from the first. The calendar grows finer with every series off the others' phase,
    and a hold's time-split pieces are one bet, so the Sharpe ratio is measured on this grid:
    adding series that do not trade, or trade off phase, cannot sharpen it."""
    offsets = points - points[0]
    exact = np.issubdtype(offsets.dtype, np.integer)
    slack = 0 if exact else 1e-9 * step  # float times: a grid time on a calendar time is on it
    count = int((offsets[-1] + slack) // step) + 1
    times = np.arange(count, dtype=np.int64) * step if exact else np.arange(count) * step
    return np.searchsorted(offsets, times + slack, "right") - 1, times
