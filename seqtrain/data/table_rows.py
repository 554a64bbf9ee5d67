"""A whole table read into arrays for the in-memory path, a few row groups at a time: the key
columns (time, series, target) first, which give the sort order, then the feature columns
written straight into their sorted place in one float32 matrix.

Reading part by part (``source.row_group_parts``) bounds what is in flight: a whole-table read
holds Arrow's table and its scanner's read-ahead besides the arrays it is decoded into, and
pieces of Arrow's pool stay pinned between the arrays kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from seqtrain.data import source, validate
from seqtrain.data.columns import float_column, read_target, target_history_is_input, time_values
from seqtrain.data.reader_rules import PartSeriesCodes, TargetCheck, apply_nan_policy
from seqtrain.errors import SeqtrainError

log = logging.getLogger(__name__)

READ_BYTES = 8 << 20  # decoded values read from the file at once
MEMORY_TARGET_FIX = "clean the file or set data.nan_policy=ffill or drop"


@dataclass
class TableRows:
    """The needed columns of a table as arrays, rows grouped by series in time order."""

    times: np.ndarray
    series: np.ndarray  # int series code per row
    series_names: list
    matrix: np.ndarray  # (N, F) float32 feature columns, unscaled, and one more column when the
    # target's history is an input: room to append it without copying the matrix (fit_inputs)
    features: list[str]
    target_kind: str  # numeric | categorical
    target_values: np.ndarray
    file_rows: np.ndarray  # each row's position in the file, for error messages
    zone: str | None = None  # the time column's zone (times are UTC instants then), else None

    @property
    def x(self) -> np.ndarray:
        """The feature columns: a view of ``matrix``."""
        return self.matrix[:, :len(self.features)]

    def take(self, index: np.ndarray) -> None:
        for name in ("times", "series", "matrix", "target_values", "file_rows"):
            setattr(self, name, getattr(self, name)[index])


def read_rows(cfg, task: str, path: str, time_col: str, group_col: str | None, target: str,
              features: list[str]) -> TableRows:
    """Only the needed columns, decoded and checked; rows grouped by series (stable: the file's
    time order inside each series is kept, or sorted with ``data.sort``), in time order, with
    the NaN policy applied."""
    dataset = source.open_dataset(path)
    # about READ_BYTES of float32 features per part (the key columns: three or four values a row)
    parts = source.row_group_parts(dataset, max(1, READ_BYTES // (4 * max(4, len(features)))))
    if not parts:
        raise SeqtrainError(f"data.path: {path} has no rows")
    times, series, series_names, target_kind, target_values = _read_keys(path, dataset, parts, time_col,
                                                                         group_col, target, task)
    pa.default_memory_pool().release_unused()
    order = np.lexsort((times, series)) if cfg.sort else np.argsort(series, kind="stable")
    times = times[order]  # one array at a time: each unsorted copy goes as its sorted one comes
    series = series[order]
    target_values = target_values[order]
    history_room = target_history_is_input(cfg, target) and target_kind == "numeric"
    matrix = np.empty((len(order), len(features) + history_room), np.float32)
    _read_features(path, dataset, parts, features, order, matrix)
    rows = TableRows(times, series, series_names, matrix, list(features), target_kind, target_values,
                     file_rows=order)
    validate.check_time_order(rows.times, rows.series, series_names, rows.file_rows, time_col)
    keep = apply_nan_policy(cfg.nan_policy, rows.x, features, rows.file_rows, rows.series,
                            TargetCheck(target, rows.target_values, target_kind, fix=MEMORY_TARGET_FIX))
    if keep is not None:
        log.warning("data.nan_policy=%s: dropped %d row(s) with NaN/inf", cfg.nan_policy, int((~keep).sum()))
        rows.take(keep)
        if len(rows.times) == 0:
            raise SeqtrainError(f"data.nan_policy={cfg.nan_policy} left no rows in {path}")
    return rows


def _read_keys(path: str, dataset, parts: list, time_col: str, group_col: str | None, target: str,
               task: str):
    """The key columns in file order, each part decoded into arrays of the whole table's length:
    ``(times, series codes, series names, target kind, target values)``, as decoding the whole
    columns at once gives them. Times written as text are parsed whole (pandas infers their
    format from the values it sees)."""
    n = sum(n_rows for _, n_rows in parts)
    columns = list(dict.fromkeys([time_col, *([group_col] if group_col else []), target]))
    text_times = pa.types.is_string(dataset.schema.field(time_col).type) or pa.types.is_large_string(
        dataset.schema.field(time_col).type)
    codes, series = PartSeriesCodes(group_col), np.empty(n, np.int64)
    times = target_values = target_kind = None
    time_parts = []
    start = 0
    for part, n_rows in parts:
        table = source.read_row_group(part, dataset.schema, columns)
        rows = slice(start, start + n_rows)
        if table.num_rows != n_rows:
            raise SeqtrainError(f"data.path: {path} changed while it was read; read it again")
        if codes.has_missing(table) or table.column(time_col).null_count:  # one line, the whole table's count
            _whole_column_error(path, dataset, time_col, group_col, codes.has_missing(table))
        series[rows] = codes.of(table)
        target_kind, values = read_target(table.column(target), target, task)
        target_values = np.empty(n, values.dtype) if target_values is None else target_values
        target_values[rows] = values
        if text_times:
            time_parts.extend(table.column(time_col).chunks)
        else:
            values = time_values(table.column(time_col), time_col)
            times = np.empty(n, values.dtype) if times is None else times
            times[rows] = values
        start += n_rows
    if text_times:
        times = time_values(pa.chunked_array(time_parts, dataset.schema.field(time_col).type), time_col)
    series, names = codes.in_name_order(series)
    return times, series, names, target_kind, target_values


def _whole_column_error(path: str, dataset, time_col: str, group_col: str | None, in_group: bool) -> None:
    """Raise the whole-table error of a key column with missing values (which counts them)."""
    column = group_col if in_group else time_col
    table = source.read_columns(path, [column], dataset)
    if in_group:
        PartSeriesCodes.refuse_missing(table.column(group_col), group_col)
    time_values(table.column(time_col), time_col)


def _read_features(path: str, dataset, parts: list, features: list[str], order: np.ndarray,
                   matrix: np.ndarray) -> None:
    """The feature columns decoded straight into their sorted place in ``matrix`` (row ``i`` of
    the file goes to the row where ``order`` holds ``i``), a few row groups and columns at a
    time: at most ``READ_BYTES`` of decoded values (or one column of a larger row group) in
    flight."""
    if not features:
        return
    place = None  # rows already grouped and in order (the usual file): each part lands as a slice
    if not (np.diff(order) == 1).all():
        place = np.empty_like(order)
        place[order] = np.arange(len(order))
    start = 0
    for part, n_rows in parts:
        rows = slice(start, start + n_rows) if place is None else place[start:start + n_rows]
        per_read = max(1, READ_BYTES // (4 * n_rows))  # one column of a tall row group, all of a short one
        for first in range(0, len(features), per_read):
            names = features[first:first + per_read]
            table = source.read_row_group(part, dataset.schema, list(dict.fromkeys(names)))
            if table.num_rows != n_rows:
                raise SeqtrainError(f"data.path: {path} changed while it was read; read it again")
            for j, name in enumerate(names, start=first):
                matrix[rows, j] = float_column(table, name)
            del table
        pa.default_memory_pool().release_unused()  # Arrow's decode buffers go as each part goes
        start += n_rows
