"""The built-in demo table: a few series with a learnable, look-ahead-free signal.

Each series mixes a daily cycle (predictable from its phase), an AR(1) disturbance (partly
predictable from its last value) and a lagged driver (``driver`` at t-2 moves ``y`` at t), plus
noise. Every column of row t is computable at time t, so the demo itself has no look-ahead:
``direction`` is the sign of the move *into* row t, and the label of a window ending at t is the
next move, ``direction[t+1]``.

``make_load_table`` is a harder, forecasting-shaped demo (``data.generator.name=load``): an
hourly load with a daily profile, quieter weekends, level shifts every few weeks and persistent
noise, the kind of series on which yesterday's value at the same hour (seasonal naive) is hard to
beat. ``make_bars_table`` (``bars``) is raw OHLCV bars, the input of a direction model.
``make_cases_table`` (``cases``) is of another kind: whole sequences, one label each, for
classifying a case from all of its steps.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from seqtrain.errors import SeqtrainError
from seqtrain.files import write_table


def make_table(n_series: int = 3, length: int = 2000, seed: int = 0, freq: str = "h") -> pd.DataFrame:
    """The demo rows, deterministic for a given seed: time, symbol, features, y, direction."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    frames = []
    for s in range(n_series):
        phase = rng.uniform(0, 2 * np.pi)
        cycle = np.sin(2 * np.pi * t / 24 + phase)
        weekly = 0.5 * np.sin(2 * np.pi * t / 168 + 2 * phase)
        shocks = rng.normal(0, 0.3, length)
        ar = np.zeros(length)
        for i in range(1, length):
            ar[i] = 0.8 * ar[i - 1] + shocks[i]
        driver = rng.normal(0, 0.5, length)
        lagged = np.concatenate([[0.0, 0.0], driver[:-2]])
        y = cycle + weekly + ar + lagged + rng.normal(0, 0.05, length)
        frames.append(pd.DataFrame({
            "time": pd.date_range("2021-01-01", periods=length, freq=freq),
            "symbol": f"S{s}",
            "cycle_obs": (cycle + rng.normal(0, 0.1, length)).astype(np.float32),
            "cycle_quad": (np.cos(2 * np.pi * t / 24 + phase) + rng.normal(0, 0.1, length)).astype(
                np.float32),
            "ar_obs": (ar + rng.normal(0, 0.05, length)).astype(np.float32),
            "driver": driver.astype(np.float32),
            "noise": rng.normal(0, 1, length).astype(np.float32),
            "y": y.astype(np.float32),
            "direction": np.concatenate([[0], (np.diff(y) > 0)]).astype(np.int8),
        }))
    return pd.concat(frames, ignore_index=True)


def make_load_table(n_series: int = 3, length: int = 2688, seed: int = 0, freq: str = "h",
                    static: bool = False) -> pd.DataFrame:
    """Hourly loads, deterministic for a given seed: time, symbol, y, direction; with ``static``
    also two columns constant per series that describe its profile: ``peak``, the hour of its
    evening peak, and ``region``, ``early`` or ``late`` by its morning peak (the same series
    either way: the columns are drawn from what the series already had).

    Each series is ``level × daily profile × weekday factor + AR(1) noise``: a two-peak daily
    profile of its own, weekends 25% lower, a level that jumps (by -15% to +35%) every two to six
    weeks (so later periods lie outside the training range) and noise that persists
    over hours. The label of a day-ahead forecast needs the profile, the weekday and the recent
    level together; yesterday's value alone gets the weekday and level changes wrong."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    hour, weekday = t % 24, (t // 24) % 7
    frames = []
    for s in range(n_series):
        peaks = rng.uniform([6, 16], [10, 20])
        profile = (1 + 0.35 * np.exp(-0.5 * ((hour - peaks[0]) / 2.0) ** 2)
                   + 0.5 * np.exp(-0.5 * ((hour - peaks[1]) / 2.5) ** 2)
                   - 0.2 * np.exp(-0.5 * ((hour - 3) / 2.0) ** 2))
        week = np.where(weekday >= 5, 0.75, 1.0)
        level = np.empty(length)
        start, value = 0, 100.0 * rng.uniform(0.8, 1.2)
        while start < length:
            span = int(rng.integers(24 * 14, 24 * 42))
            level[start:start + span] = value
            value *= rng.choice([0.85, 1.15, 1.25, 1.35])  # mostly growth: later levels are new
            start += span
        noise = np.zeros(length)
        shocks = rng.normal(0, 2.0, length)
        for i in range(1, length):
            noise[i] = 0.9 * noise[i - 1] + shocks[i]
        y = level * profile * week + noise + rng.normal(0, 1.0, length)
        frame = pd.DataFrame({
            "time": pd.date_range("2021-01-04", periods=length, freq=freq),  # a Monday
            "symbol": f"S{s}",
            "y": y.astype(np.float32),
            "direction": np.concatenate([[0], (np.diff(y) > 0)]).astype(np.int8),
        })
        if static:
            frame["peak"] = np.float32(round(peaks[1], 1))
            frame["region"] = "early" if peaks[0] < 8 else "late"
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def make_bars_table(n_series: int = 3, length: int = 4000, seed: int = 0, freq: str = "h",
                    informed: float = 1 / 7, derived: bool = False) -> pd.DataFrame:
    """Raw hourly OHLCV bars, deterministic for a given seed: time, symbol, open, high, low,
    close, volume — prices at levels of their own, nothing derived.

    Log returns are noise with slowly changing volatility, except after an "informed" bar (a
    share ``informed`` of the bars, one in seven by default): its volume is about three times the
    usual, it closes near its high or its low, and the next four bars drift that way by half the
    volatility each. Reading it takes the volume and where the close sits in the bar's range
    together, at the scale of the series' recent moves (a price's level says nothing); every
    value of row t is known at its close. ``informed=0`` is a pure random walk with the same
    volatility path, base volume and wicks: nothing in it predicts the next move. The random
    draws are the same whatever ``informed`` is, so only the planted bars differ. ``derived``
    adds the columns ``bar_features`` computes from them (each from rows at or before its own)."""
    if isinstance(informed, bool) or not isinstance(informed, int | float) or not 0 <= informed <= 1:
        raise SeqtrainError(f"data.generator.informed: {informed!r}; a share of the bars between 0 and 1 "
                            "(0: a pure random walk, default 1/7)")
    if not isinstance(derived, bool):
        raise SeqtrainError(f"data.generator.derived: {derived!r}; true (add the bar_features columns) "
                            "or false")
    rng = np.random.default_rng(seed)
    frames = []
    for s in range(n_series):
        vol = np.exp(np.log(0.004) + np.cumsum(rng.normal(0, 0.02, length)).clip(-1, 1))
        is_informed = rng.random(length) < informed
        side = rng.choice([-1.0, 1.0], length)  # where an informed bar closes, and the drift after
        drift = np.zeros(length)
        for t in np.flatnonzero(is_informed):
            drift[t + 1:t + 5] += side[t] * vol[t] / 2
        returns = rng.normal(0, 1, length) * vol + drift
        close = 100 * rng.uniform(0.5, 2.0) * np.exp(np.cumsum(returns))
        open_ = np.concatenate([[close[0] / np.exp(returns[0])], close[:-1]])
        wick = np.abs(rng.normal(0, 0.5, (2, length))) * vol
        wick[0, is_informed & (side > 0)] *= 0.1  # closes near the high
        wick[1, is_informed & (side < 0)] *= 0.1  # ... or near the low
        volume = (1e5 * rng.uniform(0.5, 2) * np.exp(rng.normal(0, 0.3, length))
                  * np.where(is_informed, 3.0, 1.0))
        frames.append(pd.DataFrame({
            "time": pd.date_range("2021-01-04", periods=length, freq=freq),
            "symbol": f"S{s}",
            "open": open_, "high": np.maximum(open_, close) * np.exp(wick[0]),
            "low": np.minimum(open_, close) * np.exp(-wick[1]), "close": close,
            "volume": volume.round(),
        }))
        if derived:
            frames[-1] = pd.concat([frames[-1], bar_features(frames[-1])], axis=1)
    return pd.concat(frames, ignore_index=True)


def bar_features(bars: pd.DataFrame, volume_window: int = 24) -> pd.DataFrame:
    """Scale-free columns of one series' OHLCV bars, each from rows at or before its own: ``ret``
    (log close over open), ``upper_wick`` and ``lower_wick`` (the wick above the body and below
    it, as shares of the bar's log range) and ``volume_ratio`` (log volume over the median of the
    last ``volume_window`` bars, this one included). What a model of the raw bars must otherwise
    work out from prices at levels of their own."""
    open_, high, low, close = (np.log(bars[c].to_numpy(np.float64)) for c in ("open", "high", "low", "close"))
    span = np.where(high > low, high - low, 1.0)  # a bar without range has no wicks either
    volume = bars["volume"].astype(np.float64)
    trailing = volume.rolling(volume_window, min_periods=1).median()
    return pd.DataFrame({
        "ret": close - open_,
        "upper_wick": (high - np.maximum(open_, close)) / span,
        "lower_wick": (np.minimum(open_, close) - low) / span,
        "volume_ratio": np.log(np.maximum(volume, 1.0) / np.maximum(trailing, 1.0)),
    }, index=bars.index).astype(np.float32)


#: The shapes of the cases table, in the order classes are taken from it.
CASE_SHAPES = ("sine", "square", "sawtooth", "bump", "chirp")


def _case_shape(shape: str, width: int, rng: np.random.Generator) -> np.ndarray:
    """One event of ``shape`` over ``width`` steps, peak about 1, phase and cycles drawn here."""
    u = np.linspace(0.0, 1.0, width)
    cycles, phase = rng.uniform(1.5, 2.5), rng.uniform(0, 2 * np.pi)
    if shape == "sine":  # a smooth, tapered burst
        return np.sin(2 * np.pi * cycles * u + phase) * np.sin(np.pi * u)
    if shape == "square":  # the sine's edges made sharp: the derivative channel tells them apart
        return np.sign(np.sin(2 * np.pi * cycles * u + phase))
    if shape == "sawtooth":  # slow rises, sudden drops
        return 2 * ((cycles * u + phase / (2 * np.pi)) % 1.0) - 1
    if shape == "bump":
        return np.exp(-0.5 * ((u - 0.5) / rng.uniform(0.12, 0.2)) ** 2)
    return np.sin(2 * np.pi * (0.5 * u + 1.5 * cycles * u ** 2) + phase)  # chirp: frequency rises


def make_cases_table(n_cases: int = 600, n_classes: int = 4, channels: int = 3, min_length: int = 48,
                     max_length: int = 128, noise: float = 0.25, seed: int = 0) -> pd.DataFrame:
    """Whole sequences with one label each ("long": one row per case and step), deterministic
    for a given seed: case, step, c0 ... c{channels-1}, label.

    Each case (its length uniform in [min_length, max_length]) holds one event of its class's
    shape (``CASE_SHAPES``: sine burst, square wave, sawtooth, gaussian bump, chirp) on channel
    c0, at a random position, with a random amplitude, width, phase and level; c1 is the event's
    slope, a step late and noisier; the other channels are noise. Classes are balanced (n_cases
    a multiple of n_classes, or off by one). Because the event moves, comparing whole cases step by
    step (1-NN, Euclidean) is a weak baseline; a filter that finds the shape anywhere is not."""
    if not 2 <= n_classes <= len(CASE_SHAPES):
        raise SeqtrainError(f"data.generator.n_classes: {n_classes}; between 2 and {len(CASE_SHAPES)}")
    if not 16 <= min_length <= max_length:
        raise SeqtrainError(f"data.generator.min_length: {min_length} (max_length {max_length}); "
                            "at least 16 and at most max_length")
    if channels < 1 or n_cases < n_classes:
        raise SeqtrainError(f"data.generator.channels: {channels}, n_cases: {n_cases}; at least one "
                            "channel and one case per class")
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.arange(n_cases) % n_classes)
    lengths = rng.integers(min_length, max_length + 1, n_cases)
    values = [_case_values(CASE_SHAPES[cls], int(length), channels, noise, rng)
              for cls, length in zip(classes, lengths, strict=True)]
    columns = np.concatenate(values, axis=1).astype(np.float32)
    return pd.DataFrame({
        "case": np.repeat([f"case{case:05d}" for case in range(n_cases)], lengths),
        "step": np.concatenate([np.arange(length, dtype=np.int64) for length in lengths]),
        **{f"c{c}": columns[c] for c in range(channels)},
        "label": np.repeat(np.array(CASE_SHAPES)[classes], lengths)})


def _case_values(shape: str, length: int, channels: int, noise: float,
                 rng: np.random.Generator) -> np.ndarray:
    """One case's channels, (channels, length): the event on c0, its slope on c1, noise."""
    width = min(length, int(rng.integers(32, 49)))
    start = length - width - int(rng.integers(0, (length - width) // 4 + 1))  # ends near the end
    clean = np.zeros(length)
    clean[start:start + width] = rng.uniform(0.6, 1.4) * _case_shape(shape, width, rng)
    clean += rng.normal(0, 0.1)  # a level of the case's own
    rise = np.diff(clean, prepend=clean[0]) * width / 10  # near unit size; a square's edges clipped
    values = rng.normal(0, noise, (channels, length))
    values[0] += clean
    if channels > 1:
        values[1] += np.concatenate([[0.0], rise[:-1]]).clip(-3, 3)  # a step late
    return values

GENERATORS = {"demo": make_table, "load": make_load_table, "bars": make_bars_table,
              "cases": make_cases_table}


def planted_signal_table(n_rows: int = 6000, n_noise: int = 4, seed: int = 0) -> pd.DataFrame:
    """A signal no single column shows: the label at t+1 is the sign of x1[t]·sign(x2[t-3]),
    among noise columns. Nothing beats chance (0.5) without reading x1 now and x2 three rows
    back together; a check that a model learns at all."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n_rows), rng.normal(size=n_rows)
    label = np.zeros(n_rows, np.int64)
    label[4:] = x1[3:-1] * np.sign(x2[:-4]) > 0
    noise = {f"noise{i}": rng.normal(size=n_rows) for i in range(n_noise)}
    return pd.DataFrame({"time": np.arange(n_rows), "x1": x1, "x2": x2, **noise, "label": label})


def write_parquet(path: str | Path, name: str = "demo", **params) -> Path:
    """Write built-in table ``name`` (demo | load | bars | cases) to ``path`` (atomically: a killed run
    leaves no half file); a setting left None takes the table's own default."""
    if name not in GENERATORS:
        raise SeqtrainError(f"data.generator.name: unknown {name!r}; choose {', '.join(GENERATORS)}")
    make = GENERATORS[name]
    given = {key: value for key, value in params.items() if value is not None}
    accepted = set(inspect.signature(make).parameters)
    for key in given:
        if key not in accepted:
            raise SeqtrainError(f"data.generator.{key}: not a setting of the {name} table; "
                                f"valid: {', '.join(sorted(accepted))}")
    path = Path(path)  # DDP processes under torchrun may write it at once: each has its own temporary
    write_table(path, pa.Table.from_pandas(make(**given), preserve_index=False), key="data.path")
    return path
