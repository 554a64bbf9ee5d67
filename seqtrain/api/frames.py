"""The estimator's frames as seqtrain's tables: ``X`` indexed by time or (time, series), ``y``
a Series on the same index, tz-aware times as UTC wall times, rows whose label is not known yet
left out, and forecasts put back on ``X``'s index."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqtrain.errors import SeqtrainError


def index_columns(X: pd.DataFrame) -> tuple[str, str | None]:
    """(time column, series column or None) from ``X``'s index: time, or (time, series) in
    either order; the time level is the one holding timestamps or, failing that, the first."""
    if not isinstance(X, pd.DataFrame):
        raise SeqtrainError(f"X: a pandas DataFrame of feature columns is needed, got {type(X).__name__}")
    names = list(X.index.names)
    if len(names) > 2 or any(n is None for n in names):
        raise SeqtrainError("X: index it by time, or by (time, series), with named levels "
                            "(e.g. X.set_index(['time', 'symbol']))")
    if len(names) == 1:
        return str(names[0]), None
    return str(names[time_level(X)]), str(names[1 - time_level(X)])


def time_level(X: pd.DataFrame) -> int:
    if X.index.nlevels == 1:
        return 0
    kinds = [pd.api.types.is_datetime64_any_dtype(X.index.get_level_values(i)) for i in range(2)]
    return 1 if kinds[1] and not kinds[0] else 0


def time_zone(X: pd.DataFrame) -> str | None:
    times = X.index.get_level_values(time_level(X))
    return str(times.tz) if isinstance(times.dtype, pd.DatetimeTZDtype) else None


def naive_times(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` with a tz-aware time index as UTC wall times (what the data layer compares)."""
    level = time_level(X)
    times = X.index.get_level_values(level)
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        return X
    naive = times.tz_convert("UTC").tz_localize(None)
    if X.index.nlevels == 1:
        return X.set_axis(naive.rename(X.index.name), axis=0)
    return X.set_axis(X.index.set_levels(X.index.levels[level].tz_convert("UTC").tz_localize(None),
                                         level=level), axis=0)


def check_columns(X: pd.DataFrame, index: tuple[str, str | None]) -> None:
    """X's columns and rows as a table can hold them: unique names, none named like an index
    level, and rows, each (time, series) once."""
    names = [str(c) for c in X.columns]
    seen = set()
    for name in names:
        if name in seen:
            raise SeqtrainError(f"X: column {name!r} appears twice; give each column one name")
        if name in index:
            raise SeqtrainError(f"X: column {name!r} is also the name of an index level; rename one of them")
        seen.add(name)
    if X.empty:
        raise SeqtrainError("X: no rows; give at least seq_length rows per series")
    duplicated = X.index.duplicated()
    if duplicated.any():
        raise SeqtrainError(f"X: index entry {X.index[duplicated][0]!r} appears more than once; each "
                            "time (per series) must be one row")


def as_table(X: pd.DataFrame, y: pd.Series, target: str) -> pd.DataFrame:
    if not isinstance(y, pd.Series) or not X.index.equals(y.index):
        raise SeqtrainError("y: its index differs from X's; give y on the same (time[, series]) index")
    table = naive_times(X).assign(**{target: y.to_numpy()}).reset_index()
    table.columns = [str(c) for c in table.columns]
    return table


def labelled_rows(X: pd.DataFrame, y: pd.Series, name: str, label_ahead: int | None
                  ) -> tuple[pd.DataFrame, pd.Series]:
    """``X``, ``y`` without the rows whose label is not known yet: with ``label_ahead=k``
    the last k rows of each series (a look-ahead label always ends so); any other missing
    or infinite label is refused."""
    if not X.index.equals(y.index):
        raise SeqtrainError(f"{name}: its index differs from X's; give it on the same "
                            "(time[, series]) index")
    bad = y.isna().to_numpy().copy()
    if pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y):
        bad |= ~np.isfinite(y.to_numpy(float, na_value=np.nan))
    k = label_ahead
    if k and bad.any():
        times = pd.Series(X.index.get_level_values(time_level(X)).to_numpy())
        level = time_level(X)
        series = X.index.get_level_values(1 - level) if X.index.nlevels == 2 else np.zeros(len(X))
        last = (times.groupby(series).rank(ascending=False, method="first") <= k).to_numpy()
        X, y, bad = X[~(bad & last)], y[~(bad & last)], bad[~(bad & last)]
    if bad.any():
        allowed = f" (label_ahead={k}: only each series' last {k} rows may lack one)" if k else ""
        raise SeqtrainError(f"{name}: {int(bad.sum())} missing or infinite label(s), the first at "
                            f"{y.index[bad][0]!r}; every row needs its label{allowed}")
    return X, y


def on_index(X: pd.DataFrame, forecasts: pd.DataFrame, columns: list[str], state) -> pd.DataFrame:
    """Forecast columns for each row of ``X`` (the window ending at it), on ``X``'s index
    (``state``: the run's ``DataState``)."""
    keys = ["window_end", *([state.group_col] if state.group_col else [])]
    steps = state.window.output_steps
    if forecasts.empty:
        names = columns if steps == 1 else [f"{c}_step{s}" for c in columns for s in range(1, steps + 1)]
        return pd.DataFrame(np.nan, index=X.index, columns=names)
    wide = forecasts.pivot_table(index=keys, columns="step", values=columns, aggfunc="first")
    if steps == 1:
        wide.columns = [c for c, _ in wide.columns]
    else:
        wide.columns = [f"{c}_step{s}" for c, s in wide.columns]
    rows = naive_times(X).reset_index()
    rows.columns = [str(c) for c in rows.columns]
    rows = rows[[state.time_col, *([state.group_col] if state.group_col else [])]]
    rows = rows.rename(columns={state.time_col: "window_end"})
    rows["window_end"] = rows["window_end"].astype(forecasts["window_end"].dtype)
    out = rows.merge(wide.reset_index(), on=keys, how="left")
    out.index = X.index
    return out.drop(columns=keys)
