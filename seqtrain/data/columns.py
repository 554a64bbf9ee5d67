"""Column decoding, checks and the small shared rules both readers (in memory and streamed)
apply to the rows they read: time values, feature and target columns, class labels and their
balance, the split boundaries, the known-future columns. Every problem is one clear error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from seqtrain.data import validate
from seqtrain.data.windows import SPLIT_NAMES, fraction_boundaries
from seqtrain.errors import SeqtrainError, first_line


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


def split_by_series(cfg) -> bool:
    """``data.split.by``: one global time axis (``time``), or each series by its own shares."""
    by = cfg.split.get("by", "time")
    if by not in ("time", "series"):
        raise SeqtrainError(f"data.split.by: {by!r}; choose time or series")
    if by == "series" and (cfg.split.val_start is not None or cfg.split.test_start is not None):
        raise SeqtrainError("data.split.by=series splits each series by shares of its rows; "
                            "drop data.split.val_start/test_start, or use data.split.by=time")
    return by == "series"


def split_boundaries(split, times: np.ndarray, time_col: str, zone: str | None = None):
    if split.val_start is not None and split.test_start is not None:
        val_start = as_time(split.val_start, times, "data.split.val_start", zone)
        test_start = as_time(split.test_start, times, "data.split.test_start", zone)
        if not times.min() < val_start < test_start <= times.max():
            raise SeqtrainError(
                f"data.split: need {time_col} min < val_start < test_start <= max, got "
                f"{time_text(times.min(), zone)} < {time_text(val_start, zone)} < "
                f"{time_text(test_start, zone)} <= {time_text(times.max(), zone)}"
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


def split_periods(split, times: np.ndarray, zone: str | None = None):
    """``data.split.periods`` as ``(starts, splits)``: each period's first timestamp as a value
    of the time column (increasing), and its split id; None when not set."""
    if split.get("periods") is None:
        return None
    starts = [as_time(p[0], times, f"data.split.periods[{i}]", zone) for i, p in enumerate(split.periods)]
    starts = np.asarray(starts, dtype=times.dtype)
    if (starts[1:] <= starts[:-1]).any():
        raise SeqtrainError("data.split.periods: the first timestamps must increase; "
                            "list the periods in time order")
    splits = np.asarray([validate.PERIOD_SPLITS.index(str(p[1])) for p in split.periods], np.int8)
    return starts, splits


def period_record(starts: np.ndarray, splits: np.ndarray, zone: str | None) -> dict:
    """What data_state.json records of a split by periods."""
    return {"by": "time", "periods": [[time_text(s, zone), SPLIT_NAMES[int(i)]]
                                      for s, i in zip(starts, splits, strict=True)]}


def as_time(value, times: np.ndarray, key: str, zone: str | None = None):
    """``value`` (a config setting) as a value of the time column ``times`` (UTC instants when
    the column has a ``zone``). A date or time without an offset is read in the table's zone, as
    its rows are written (``2023-01-01`` is midnight in New York for a New York table); one with
    an offset (``2023-01-01T00:00-05:00``, ``...Z``) is that instant. A table without a zone
    takes times without an offset only."""
    try:
        if not np.issubdtype(times.dtype, np.datetime64):
            return times.dtype.type(value)
        stamp = pd.Timestamp(str(value))
        if stamp.tz is None and zone is not None:
            stamp = stamp.tz_localize(zone)
    except (ValueError, TypeError) as exc:
        raise SeqtrainError(f"{key}: cannot read {value!r} as a value of the time column"
                            + (f" in {zone} ({first_line(exc)})" if zone else "")) from None
    if stamp.tz is not None and zone is None:
        raise SeqtrainError(f"{key}: {value!r} has a time zone but the time column has none; "
                            "give it without an offset, as the table's times are written")
    if stamp.tz is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp, "ns")


def in_period(split, times: np.ndarray, zone: str | None = None) -> np.ndarray | None:
    """Which rows lie in ``[data.split.train_start, data.split.test_end)`` (a walk-forward
    fold's period); None when neither is set."""
    start, end = split.get("train_start"), split.get("test_end")
    if start is None and end is None:
        return None
    keep = np.ones(len(times), bool)
    if start is not None:
        keep &= times >= as_time(start, times, "data.split.train_start", zone)
    if end is not None:
        keep &= times < as_time(end, times, "data.split.test_end", zone)
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
    return names, encoded.indices.to_numpy(zero_copy_only=False)
