"""What trading the predicted direction would have earned: a signal-quality view, not a
backtester (no fills, slippage model, position sizing or capital constraints).

Per series, the position is +1 after an ``up`` prediction, -1 after ``down``, 0 after ``flat``,
held for the ``h = data.horizon`` rows the label spans. Holding periods do not overlap: every
h-th window of a series is traded, starting from its first. Each period earns the position times
the realised return, minus ``cost_bps`` per unit of position change; series are equally weighted
at each time. Buy-and-hold (+1 throughout, one entry) on the same periods is beside it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from seqtrain.report.baselines import block_resample_index

POSITIONS = {"up": 1.0, "down": -1.0, "flat": 0.0}


def _periods(frame: pd.DataFrame, group_col: str | None, horizon: int, cost_bps: float,
             position: str) -> pd.DataFrame:
    """One row per series and holding period: start time, position, its change, net return."""
    parts = []
    for _, series in (frame.groupby(group_col, sort=True) if group_col else [(None, frame)]):
        series = series.sort_values("window_end").iloc[::horizon]
        held = series["y_pred"].map(POSITIONS).to_numpy() if position == "model" else np.ones(len(series))
        change = np.abs(np.diff(np.r_[0.0, held]))
        move = series["move"].to_numpy()
        parts.append(pd.DataFrame({"start": series["window_end"].to_numpy(), "held": held, "change": change,
                                   "move": move, "net": held * move - change * cost_bps / 1e4}))
    return pd.concat(parts, ignore_index=True)


def _stats(periods: pd.DataFrame, per_year: float | None) -> tuple[dict, pd.Series]:
    returns = periods.groupby("start")["net"].mean().sort_index()  # equal weight across series
    equity = np.cumprod(1 + returns.to_numpy())
    drawdown = 1 - equity / np.maximum.accumulate(equity)
    std = returns.std(ddof=1)
    sharpe = returns.mean() / std * np.sqrt(per_year) if per_year and std > 0 else None
    interval = _sharpe_interval(returns.to_numpy(), per_year) if sharpe is not None else None
    active = periods["held"] != 0
    hits = np.sign(periods["move"][active]) == periods["held"][active]
    return {"mean_return": float(returns.mean()), "total_return": float(equity[-1] - 1),
            "sharpe_annualised": float(sharpe) if sharpe is not None else None,
            "sharpe_interval": interval,
            "max_drawdown": float(drawdown.max()), "hit_rate": float(hits.mean()) if len(hits) else None,
            "time_in_market": float(active.mean()), "turnover": float(periods["change"].mean()),
            "periods": len(returns)}, returns


def trading_report(predictions: pd.DataFrame, group_col: str | None, horizon: int,
                   cost_bps: float = 0.0) -> dict | None:
    """Mean return per holding period, annualised Sharpe (periods per year from the time
    column), hit rate, time in market, turnover and maximum drawdown of trading the predicted
    direction, beside buy-and-hold; None without realised moves (labels other than direction)."""
    if "move" not in predictions or predictions["move"].isna().all():
        return None
    frame = predictions.dropna(subset=["move"])
    model_periods = _periods(frame, group_col, horizon, cost_bps, "model")
    per_year = _periods_per_year(np.sort(model_periods["start"].unique()))
    model, model_returns = _stats(model_periods, per_year)
    hold, hold_returns = _stats(_periods(frame, group_col, horizon, cost_bps, "hold"), per_year)
    return {"cost_bps": cost_bps, "horizon_rows": horizon, "model": model, "buy_and_hold": hold,
            "equity": {"time": [str(t) for t in model_returns.index],
                       "model": np.cumprod(1 + model_returns.to_numpy()).tolist(),
                       "buy_and_hold": np.cumprod(1 + hold_returns.to_numpy()).tolist()}}


def _sharpe_interval(returns: np.ndarray, per_year: float, seed: int = 0) -> list[float] | None:
    """95% interval of the annualised Sharpe ratio from a moving-block bootstrap of the period
    returns (blocks of √n periods): a short record's Sharpe is mostly noise, and this says how
    much."""
    n = len(returns)
    if n < 4:
        return None
    sample = returns[block_resample_index(n, math.ceil(math.sqrt(n)), seed)]
    mean, std = sample.mean(axis=1), sample.std(axis=1, ddof=1)
    sharpe = np.where(std > 0, mean / np.where(std > 0, std, 1) * math.sqrt(per_year), 0.0)
    low, high = np.percentile(sharpe, [2.5, 97.5])
    return [float(low), float(high)]


def _periods_per_year(starts: np.ndarray) -> float | None:
    """Holding periods per year, from the span of their start times (None for numeric time)."""
    if len(starts) < 2 or not np.issubdtype(starts.dtype, np.datetime64):
        return None
    years = (starts[-1] - starts[0]) / np.timedelta64(1, "D") / 365.25
    return (len(starts) - 1) / years if years > 0 else None
