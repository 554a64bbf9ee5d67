"""Column decoding, checks and the small shared rules both readers (in memory and streamed)
apply to the rows they read: time values, feature and target columns, class labels and their
balance, the NaN policy, series codes, the known-future columns. Every problem is one clear
error. (Which split a row is in: ``splits.py``.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from seqtrain.data import validate
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


def time_zone(schema: pa.Schema, time_col: str) -> str | None:
    """The zone of a tz-aware timestamp column (``timestamp[us, tz=America/New_York]``); None
    for naive timestamps, dates, strings and numbers."""
    kind = schema.field(time_col).type
    return kind.tz if pa.types.is_timestamp(kind) and kind.tz else None


def time_values(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """The time column as numbers or ``datetime64[ns]``; tz-aware timestamps (and strings with
    offsets) as UTC instants, so that ordering, splits and windows never see a clock change."""
    if column.null_count:
        raise SeqtrainError(f"data.time_col: column {name!r} has {column.null_count} missing values")
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return _naive_utc(pd.to_datetime(column.to_pandas()))
    if validate.is_numeric(kind) and not pa.types.is_boolean(kind):
        return column.to_numpy()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = column.to_pandas()
        for utc in (False, True):  # offsets that change (daylight saving) need utc=True
            try:
                return _naive_utc(pd.to_datetime(text, utc=utc))
            except (ValueError, TypeError):
                pass
    raise SeqtrainError(
        f"data.time_col: column {name!r} ({kind}) is neither timestamps nor numbers; convert it"
    )


def _naive_utc(values: pd.Series) -> np.ndarray:
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.to_numpy(dtype="datetime64[ns]")


def wall_times(times: np.ndarray, zone: str | None) -> np.ndarray:
    """UTC instants as a clock in ``zone`` reads them (what calendar columns describe: the
    exchange's weekday and hour, the same all year round); ``times`` unchanged without a zone."""
    if zone is None or not np.issubdtype(times.dtype, np.datetime64):
        return times
    local = pd.DatetimeIndex(times).tz_localize("UTC").tz_convert(zone).tz_localize(None)
    return local.to_numpy(dtype="datetime64[ns]")


TIME_COLUMNS = ("time", "window_end")  # the times of a predictions frame


def in_zone(frame: pd.DataFrame, zone: str | None) -> pd.DataFrame:
    """A predictions frame with its UTC times (``time``, ``window_end``) back in ``zone``, the
    zone of the table they came from (as written to Parquet); unchanged without a zone."""
    if zone is None:
        return frame
    zoned = {c: pd.to_datetime(frame[c]).dt.tz_localize("UTC").dt.tz_convert(zone)
             for c in TIME_COLUMNS if c in frame and pd.api.types.is_datetime64_dtype(frame[c])}
    return frame.assign(**zoned)


def utc_times(frame: pd.DataFrame) -> pd.DataFrame:
    """The inverse of ``in_zone``: a predictions frame read back from Parquet with its times as
    UTC instants without a zone, as every report computes with them."""
    naive = {c: frame[c].dt.tz_convert("UTC").dt.tz_localize(None) for c in TIME_COLUMNS
             if c in frame and isinstance(frame[c].dtype, pd.DatetimeTZDtype)}
    return frame.assign(**naive) if naive else frame


def time_text(value, zone: str | None) -> str:
    """A time for a record: ISO text in ``zone`` (with its offset) for a UTC instant."""
    if zone is None or not isinstance(value, np.datetime64):
        return str(value)
    return pd.Timestamp(value).tz_localize("UTC").tz_convert(zone).isoformat()


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
    if not classes:  # every training label reads a row outside training (a split by periods)
        raise SeqtrainError(
            f"data.target: {target!r} has no training row whose label reads training rows only (a "
            "label reads the data.horizon rows before it, a triple-barrier label 5 x data.barrier.span "
            "more); make each training block longer: fewer eval.groups, a longer table or a shorter "
            "data.barrier.span"
        )
    if len(classes) < 2:
        raise SeqtrainError(
            f"data.target: {target!r} has a single class ({classes[0]!r}) in the training rows; "
            "classification needs at least two"
        )


def check_known_classes(ids: np.ndarray, values: np.ndarray, split: str, classes: list, target: str,
                        label: str = "value") -> None:
    """Refuse labels of ``split``'s windows (class ``ids``, -1 for a class unseen in training
    rows; ``values`` as in the file, or built by ``data.label``) whose class the model never saw."""
    unknown = ids < 0
    if unknown.any():
        seen = validate.name_list(sorted({str(v) for v in values[unknown].tolist()}))
        fix = ("move data.split boundaries, or widen data.dead_zone (a move within it is flat)"
               if label == "direction" else "move data.split boundaries")
        raise SeqtrainError(
            f"data.target: {target!r} has class(es) {seen} in the {split} split that "
            f"never occur in training rows (classes: {classes}); {fix}"
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
    index = encoded.indices.to_numpy(zero_copy_only=False)
    used = np.bincount(index, minlength=len(names)) > 0
    if used.all():
        return names, index
    # a categorical column's dictionary may list series no row holds (as in memory: not a series)
    return [n for n, u in zip(names, used, strict=True) if u], (np.cumsum(used) - 1)[index]
