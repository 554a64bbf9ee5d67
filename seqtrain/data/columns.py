"""Column decoding, checks and the small shared rules both readers (in memory and streamed)
apply to the rows they read: time values, feature and target columns, class labels and their
balance, the split boundaries, the known-future columns. Every problem is one clear error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from seqtrain.data import validate
from seqtrain.data.windows import fraction_boundaries
from seqtrain.errors import SeqtrainError


def known_future_columns(cfg, features: list[str], target: str, calendar_names: list[str]) -> list[str]:
    known = list(cfg.known_future or [])
    for column in known:
        if column == target:
            raise SeqtrainError(
                f"data.known_future: {column!r} is the target; its future is what is predicted"
            )
        if column not in features:
            raise SeqtrainError(
                f"data.known_future: {column!r} is not an input column; add it to data.features"
            )
    return list(dict.fromkeys([*known, *calendar_names]))


def time_values(column: pa.ChunkedArray, name: str) -> np.ndarray:
    if column.null_count:
        raise SeqtrainError(f"data.time_col: column {name!r} has {column.null_count} missing values")
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        values = pd.to_datetime(column.to_pandas())
        if values.dt.tz is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return values.to_numpy(dtype="datetime64[ns]")
    if validate.is_numeric(kind) and not pa.types.is_boolean(kind):
        return column.to_numpy()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return pd.to_datetime(column.to_pandas()).to_numpy(dtype="datetime64[ns]")
        except (ValueError, TypeError):
            pass
    raise SeqtrainError(
        f"data.time_col: column {name!r} ({kind}) is neither timestamps nor numbers; convert it"
    )


def float_column(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if pa.types.is_boolean(column.type):
        column = column.cast(pa.int8())
    return column.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)


def read_target(column: pa.ChunkedArray, name: str, task: str) -> tuple[str, np.ndarray]:
    kind = column.type
    if pa.types.is_boolean(kind):
        return "numeric", column.cast(pa.int8()).to_numpy(zero_copy_only=False).astype(np.float64)
    if validate.is_numeric(kind):
        return "numeric", column.to_numpy(zero_copy_only=False).astype(np.float64)
    if task == "classification" and (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                                     or pa.types.is_dictionary(kind)):
        values = column.to_pandas().astype(object).to_numpy()
        return "categorical", values
    raise SeqtrainError(
        f"data.target: column {name!r} ({kind}) is not numeric; "
        + ("classification accepts numbers, booleans or strings" if task == "classification"
           else "regression needs a numeric target")
    )


def missing_values(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == "numeric":
        return ~np.isfinite(values)
    return pd.isna(values)


def split_by_series(cfg) -> bool:
    """``data.split.by``: one global time axis (``time``), or each series by its own shares."""
    by = cfg.split.get("by", "time")
    if by not in ("time", "series"):
        raise SeqtrainError(f"data.split.by: {by!r}; choose time or series")
    if by == "series" and (cfg.split.val_start is not None or cfg.split.test_start is not None):
        raise SeqtrainError("data.split.by=series splits each series by shares of its rows; "
                            "drop data.split.val_start/test_start, or use data.split.by=time")
    return by == "series"


def split_boundaries(split, times: np.ndarray, time_col: str):
    if split.val_start is not None and split.test_start is not None:
        val_start = as_time(split.val_start, times, "data.split.val_start")
        test_start = as_time(split.test_start, times, "data.split.test_start")
        if not times.min() < val_start < test_start <= times.max():
            raise SeqtrainError(
                f"data.split: need {time_col} min < val_start < test_start <= max, got "
                f"{times.min()} < {val_start} < {test_start} <= {times.max()}"
            )
        return val_start, test_start
    if (split.val_start is None) != (split.test_start is None):
        raise SeqtrainError("data.split: set both val_start and test_start, or neither")
    bounds = fraction_boundaries(times, split.val, split.test)
    if bounds is None:
        raise SeqtrainError(
            f"data.split: {len(np.unique(times))} distinct timestamps are too few to split "
            f"val={split.val}, test={split.test}"
        )
    return bounds


def as_time(value, times: np.ndarray, key: str):
    """``value`` (a config setting) as a value of the time column ``times``."""
    try:
        if np.issubdtype(times.dtype, np.datetime64):
            return np.datetime64(pd.Timestamp(str(value)).tz_localize(None), "ns")
        return times.dtype.type(value)
    except (ValueError, TypeError):
        raise SeqtrainError(f"{key}: cannot read {value!r} as a value of the time column") from None


def in_period(split, times: np.ndarray) -> np.ndarray | None:
    """Which rows lie in ``[data.split.train_start, data.split.test_end)`` (a walk-forward
    fold's period); None when neither is set."""
    start, end = split.get("train_start"), split.get("test_end")
    if start is None and end is None:
        return None
    keep = np.ones(len(times), bool)
    if start is not None:
        keep &= times >= as_time(start, times, "data.split.train_start")
    if end is not None:
        keep &= times < as_time(end, times, "data.split.test_end")
    return keep


def label_values(values: np.ndarray, target: str) -> np.ndarray:
    """Class labels as given: integers (from an integer-valued float column) or strings."""
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not np.all(values[finite] == np.round(values[finite])):
            raise SeqtrainError(
                f"data.target: {target!r} has non-integer values; classification needs labels "
                "(e.g. up = ret > 0), or use task=regression"
            )
        return np.where(finite, values, -1).astype(np.int64)
    return values


def check_classes(classes: list, target: str) -> None:
    if len(classes) < 2:
        raise SeqtrainError(
            f"data.target: {target!r} has a single class ({classes[0]!r}) in the training rows; "
            "classification needs at least two"
        )


def check_known_classes(ids: np.ndarray, values: np.ndarray, split: str, classes: list, target: str) -> None:
    """Refuse labels of ``split``'s windows (class ``ids``, -1 for a class unseen in training
    rows; ``values`` as in the file) whose class the model never saw."""
    unknown = ids < 0
    if unknown.any():
        seen = sorted({str(v) for v in values[unknown].tolist()})
        raise SeqtrainError(
            f"data.target: {target!r} has class(es) {', '.join(seen)} in the {split} split that "
            f"never occur in training rows (classes: {classes}); move data.split boundaries"
        )


def class_balance(counts: np.ndarray) -> tuple[list[int], list[float]]:
    """Counts of each class among the labels of the training windows (the one definition both
    data paths use), and loss weights by inverse frequency (1 for every class when balanced)."""
    counts = np.asarray(counts, np.int64)
    weights = counts.sum() / (len(counts) * np.maximum(counts, 1))
    return counts.tolist(), weights.tolist()


def target_history_is_input(cfg, target: str) -> bool:
    """The target's own history (rows <= t) is an input: by default (``data.target_as_input``)
    or when listed among the features, and never when the target already looks ahead
    (``horizon=0``)."""
    listed = cfg.features is not None and target in cfg.features
    return bool((cfg.target_as_input or listed) and cfg.horizon > 0)


def forward_fill(values: np.ndarray, bad: np.ndarray, starts: np.ndarray, rows: np.ndarray):
    """Forward-fill within each series: a row takes the last good value at or before it."""
    source_row = np.maximum.accumulate(np.where(bad, -1, rows))
    from_same_series = source_row >= starts
    out = values.copy()
    out[bad & from_same_series] = values[source_row[bad & from_same_series]]
    out[bad & ~from_same_series] = np.nan
    return out


def series_dictionary(table: pa.Table, group_col: str | None) -> tuple[list, np.ndarray]:
    """The series of a chunk's rows as ``(names, index)``: its distinct series names and each
    row's position in them (one series ``"all"`` without a group column)."""
    if group_col is None:
        return ["all"], np.zeros(table.num_rows, np.int64)
    column = table.column(group_col)
    if column.null_count:
        raise SeqtrainError(f"data.group_col: column {group_col!r} has missing values; "
                            "give every row a series")
    encoded = column.dictionary_encode().combine_chunks()
    names = [v.item() if hasattr(v, "item") else v for v in encoded.dictionary.to_pylist()]
    return names, encoded.indices.to_numpy(zero_copy_only=False)
