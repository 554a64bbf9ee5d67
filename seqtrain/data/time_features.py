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


def calendar_features(times: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Sine/cosine of each calendar cycle that varies in ``times``: ``(N, 2c)`` and their names.

    Cycles that are constant in the data (e.g. the hour of daily bars) are left out.
    """
    index = pd.DatetimeIndex(times)
    columns, names = [], []
    for name, (value_of, period) in CALENDAR.items():
        values = np.asarray(value_of(index), dtype=np.float64)
        if len(np.unique(values)) < 2:
            continue
        angle = 2 * np.pi * values / period
        columns += [np.sin(angle), np.cos(angle)]
        names += [f"{name}_sin", f"{name}_cos"]
    if not columns:
        return np.zeros((len(times), 0), np.float32), []
    return np.column_stack(columns).astype(np.float32), names
