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


def planted_signal_table(n_rows: int = 6000, n_noise: int = 4, seed: int = 0) -> pd.DataFrame:
    """A signal no single column shows: the label at t+1 is the sign of x1[t]·sign(x2[t-3]),
    among noise columns. Nothing beats chance (0.5) without reading x1 now and x2 three rows
    back together; a model that learns it at its defaults is a model that learns."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n_rows), rng.normal(size=n_rows)
    label = np.zeros(n_rows, np.int64)
    label[4:] = x1[3:-1] * np.sign(x2[:-4]) > 0
    noise = {f"noise{i}": rng.normal(size=n_rows) for i in range(n_noise)}
    return pd.DataFrame({"time": np.arange(n_rows), "x1": x1, "x2": x2, **noise, "label": label})
