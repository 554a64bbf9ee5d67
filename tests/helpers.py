"""Test data in the shapes users bring."""

import numpy as np
import pandas as pd


def make_table(n_rows: int = 300, n_series: int = 1, seed: int = 0, classification: bool = True,
               start: str = "2022-01-03") -> pd.DataFrame:
    """A table in the shape users bring: time, symbol, ret, vol, rsi, and a label column ``up``
    that already looks one step ahead (``horizon=0``) plus a plain ``close`` target."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in range(n_series):
        close = 100 + np.cumsum(rng.normal(0, 1, n_rows))
        ret = np.diff(close, prepend=close[0])
        frames.append(pd.DataFrame({
            "time": pd.date_range(start, periods=n_rows, freq="D"),
            "symbol": f"SYM{s}",
            "ret": ret,
            "vol": pd.Series(ret).rolling(5, min_periods=1).std().fillna(0).to_numpy(),
            "rsi": rng.uniform(0, 100, n_rows),
            "close": close,
            "up": (np.roll(close, -1) > close).astype(np.int64),
        }))
    return pd.concat(frames, ignore_index=True)

