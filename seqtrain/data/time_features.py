"""Calendar columns derived from the time column: known in advance for any future row."""

from __future__ import annotations

import numpy as np
import pandas as pd

# name -> (value of a timestamp, period of the cycle)
CALENDAR = {
    "minute": (lambda t: t.minute, 60),
    "hour": (lambda t: t.hour, 24),
    "weekday": (lambda t: t.weekday, 7),
    "monthday": (lambda t: t.day - 1, 31),
    "month": (lambda t: t.month - 1, 12),
}


def cycle_ranges(times: np.ndarray) -> dict[str, tuple[float, float]]:
    """Smallest and largest value of each calendar cycle in ``times`` (to merge over chunks)."""
    index = pd.DatetimeIndex(times)
    return {name: (float(np.min(v)), float(np.max(v)))
            for name, (value_of, _) in CALENDAR.items() for v in [np.asarray(value_of(index))]}


def varying_cycles(ranges: dict[str, tuple[float, float]]) -> list[str]:
    return [name for name in CALENDAR if ranges[name][0] != ranges[name][1]]


def calendar_names(cycles: list[str]) -> list[str]:
    """The input columns of ``cycles``: the sine and cosine of each."""
    return [f"{name}_{f}" for name in cycles for f in ("sin", "cos")]


def calendar_features(times: np.ndarray, cycles: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Sine/cosine of calendar cycles: ``(N, 2c)`` and their names.

    ``cycles`` defaults to those that vary in ``times``; cycles that are constant in the data
    (e.g. the hour of daily bars) carry no information and are left out. A streamed table
    passes the cycles that vary over the whole table, so every chunk has the same columns.
    """
    if cycles is None:
        cycles = varying_cycles(cycle_ranges(times))
    index = pd.DatetimeIndex(times)
    columns, names = [], []
    for name in cycles:
        value_of, period = CALENDAR[name]
        angle = 2 * np.pi * np.asarray(value_of(index), dtype=np.float64) / period
        columns += [np.sin(angle), np.cos(angle)]
        names += [f"{name}_sin", f"{name}_cos"]
    if not columns:
        return np.zeros((len(times), 0), np.float32), []
    return np.column_stack(columns).astype(np.float32), names
