"""The three passes of ``stream_plan`` over a Parquet table's row groups, each holding one row
group in memory at a time (see ``stream_plan``'s docstring): the series and the time axis
(``scan_series``), the statistics of training rows (``fit_statistics``) and the class counts of
each split's windows (``window_label_counts``)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from seqtrain.data import source, validate
from seqtrain.data.columns import (
    check_known_classes,
    float_column,
    label_values,
    read_target,
    time_values,
    time_zone,
    wall_times,
)
from seqtrain.data.labels import (
    BarrierStream,
    LabelSpec,
    MoveStream,
    check_levels,
    check_side,
    labels_from_moves,
)
from seqtrain.data.periods import period_last_label_ok
from seqtrain.data.reader_rules import SeriesCodes, TargetCheck, apply_nan_policy
from seqtrain.data.splits import SplitRule
from seqtrain.data.state import DataState, input_matrix
from seqtrain.data.time_features import CALENDAR, cycle_ranges
from seqtrain.data.windows import SPLIT_NAMES, TRAIN, WindowSpec, chunk_row_numbers, training_label_rows
from seqtrain.errors import SeqtrainError


@dataclass
class Source:
    """Where the rows come from and which columns matter."""

    dataset: object
    row_groups: list
    time_col: str
    group_col: str | None
    target: str
    features: list[str]
    period: object = None  # data.split, when it sets train_start/test_end

    @property
    def zone(self) -> str | None:
        return time_zone(self.dataset.schema, self.time_col)

    def read(self, row_group, columns: list[str]) -> pa.Table:
        return source.read_in_period(row_group, self.dataset.schema, columns, self.time_col, self.period)

    @property
    def key_columns(self) -> list[str]:
        return [self.time_col, *([self.group_col] if self.group_col else [])]

    @property
    def columns(self) -> list[str]:
        """The columns read from each row group."""
        return list(dict.fromkeys([*self.key_columns, self.target, *self.features]))


@dataclass
class Scan:
    """Pass 1: the series, the rows of each in each row group, halos and the time axis."""

    series: SeriesCodes  # series name -> code, in sorted name order as in memory
    series_names: list
    row_group_series: list[np.ndarray]
    row_group_counts: list[np.ndarray]
    halo_start: np.ndarray
    axis: np.ndarray  # distinct times (for split fractions), or the first and last (for dates)
    time_dtype: np.dtype
    row_groups: list  # the row groups that hold rows (of a walk-forward fold's period, when set)


@dataclass
class Fit:
    """Pass 2: statistics of training rows, and rows per series and split."""

    moments: tuple | None  # (count, mean, M2) of the input columns (None until a training row)
    target_moments: tuple | None
    label_counts: dict
    cycles: dict
    split_rows: np.ndarray
    target_kind: str
    train_moves: list | np.ndarray | None = None  # data.label=direction: log moves of training rows
    period_rows: np.ndarray | None = None  # data.split.periods: rows per series and period


def scan_series(src: Source, cfg, path: str) -> Scan:
    """Pass 1, time and series only: order checks, rows per series and row group, the first
    row group each row group's windows read from (its halo), and the time axis. Row groups without
    rows (none of a walk-forward fold's period) are left out of everything after."""
    need = WindowSpec.from_config(cfg).rows  # rows one window spans
    series = SeriesCodes(src.group_col)  # codes by first appearance, until all are known
    last_time: dict[int, object] = {}
    counts: dict[int, int] = {}
    history: dict[int, tuple[list[int], list[int]]] = {}  # code -> (row groups, rows after each)
    row_group_series, row_group_counts, halo, distinct, extremes = [], [], [], [], []
    row0, times, kept = 0, None, []
    for row_group in src.row_groups:
        table = src.read(row_group, src.key_columns)
        if table.num_rows == 0:
            continue
        i = len(kept)  # the row group's position among those kept
        kept.append(row_group)
        times = time_values(table.column(src.time_col), src.time_col)
        codes = series.codes(table)
        order = np.argsort(codes, kind="stable")
        times, codes = times[order], codes[order]
        _check_order(times, codes, last_time, series.names_by_code(), src.time_col, row0 + order)
        present, n_rows = np.unique(codes, return_counts=True)
        back = i
        for code, n in zip(present.tolist(), n_rows.tolist(), strict=True):
            before = counts.get(code, 0)
            first_needed = max(before - (need - 1), 0)
            if first_needed < before:
                held_in, cum = history[code]
                back = min(back, held_in[bisect.bisect_right(cum, first_needed)])
            counts[code] = before + n
            held_in, cum = history.setdefault(code, ([], []))
            held_in.append(i)
            cum.append(before + n)
        row_group_series.append(present)
        row_group_counts.append(n_rows)
        halo.append(back)
        low, high = times.min(), times.max()
        extremes = [low, high] if not extremes else [min(extremes[0], low), max(extremes[1], high)]
        if cfg.split.val_start is None and cfg.split.get("periods") is None:
            distinct.append(np.unique(times))
            if len(distinct) > 64:
                distinct = [np.unique(np.concatenate(distinct))]
        row0 += table.num_rows
    if row0 == 0:
        period = src.period
        raise SeqtrainError(f"data.path: {path} has no rows" + (
            f" between data.split.train_start={period.get('train_start')} and test_end="
            f"{period.get('test_end')}" if period is not None else ""))
    remap = series.in_name_order()
    row_group_series = [remap[s] for s in row_group_series]
    for i in range(len(kept)):
        sort = np.argsort(row_group_series[i])
        row_group_series[i], row_group_counts[i] = row_group_series[i][sort], row_group_counts[i][sort]
    axis = np.unique(np.concatenate(distinct)) if distinct else np.asarray(extremes, dtype=times.dtype)
    return Scan(series, series.names, row_group_series, row_group_counts, np.asarray(halo, np.int64), axis,
                 times.dtype, kept)


def _check_order(times, codes, last_time: dict, names, time_col: str, file_rows) -> None:
    starts = np.concatenate([[0], np.flatnonzero(codes[1:] != codes[:-1]) + 1])
    firsts = codes[starts]
    previous = np.asarray([last_time.get(c) is not None for c in firsts.tolist()])
    if previous.any():
        earlier = np.asarray([last_time[c] for c in firsts[previous].tolist()], dtype=times.dtype)
        step = times[starts[previous]]
        bad = step <= earlier
        if bad.any():
            i = starts[previous][bad][0]
            series = names[codes[i]]
            what = "has duplicate timestamps" if step[bad][0] == earlier[bad][0] else "is not sorted"
            raise SeqtrainError(
                f"data.time_col: {time_col!r} {what} in series {series!r} across row groups "
                f"(row {file_rows[i]}: {times[i]}); sort the files by time within each series"
            )
    validate.check_time_order(times, codes, names, file_rows, time_col)
    ends = np.concatenate([starts[1:], [len(codes)]]) - 1
    for c, t in zip(codes[ends].tolist(), times[ends], strict=True):
        last_time[c] = t


def fit_statistics(src: Source, cfg, task: str, scan: Scan, splitting: SplitRule,
                    use_target_history: bool, spec: LabelSpec) -> Fit:
    """Pass 2, every needed column: NaN/inf checks on all rows; on training rows the input
    moments (every calendar cycle: those constant over training rows are dropped after), the
    calendar ranges, the target's moments or class counts; rows per series and split (and per
    series and period, split by periods)."""
    all_cycles = list(CALENDAR) if cfg.time_features else []
    columns = src.columns
    n_series = len(scan.series_names)
    periods = splitting.periods
    fit = Fit(moments=None, target_moments=None, label_counts={}, cycles={},
               split_rows=np.zeros((n_series, 3), np.int64), target_kind="numeric", train_moves=[],
               period_rows=None if periods is None else np.zeros((n_series, len(periods[1])), np.int64))
    counters = np.zeros(n_series, np.int64)
    last_blocked = np.full(n_series, -1, np.int64)  # training_label_rows' carry
    row0 = 0
    stream = MoveStream(spec.horizon, spec.target_kind)
    barriers = BarrierStream(spec.horizon, spec.target_kind, spec.barrier) if spec.barrier else None
    for row_group in src.row_groups:
        table = src.read(row_group, columns)
        file_rows = row0 + np.arange(table.num_rows)
        times = time_values(table.column(src.time_col), src.time_col)
        codes = scan.series.codes(table)
        x = _features(table, src.features)
        fit.target_kind, y = read_target(table.column(src.target), src.target, task)
        _check_finite_rows(src, x, y, fit.target_kind, file_rows)
        labels = y
        if spec.builds:  # the move over the horizon ending at each row (carried across row groups)
            labels = _built_labels(spec, task, src, fit.target_kind, x, y, codes, file_rows, stream, barriers)
        history = use_target_history and fit.target_kind == "numeric"
        x = input_matrix(x, times, all_cycles, y if history else None, src.zone)
        row_number = chunk_row_numbers(codes, counters)
        row_split, row_period = splitting.of_rows(times, codes, row_number)
        np.add.at(fit.split_rows, (codes, row_split), 1)
        if row_period is not None:
            np.add.at(fit.period_rows, (codes, row_period), 1)
        train = row_split == TRAIN
        labelled = training_label_rows(row_number, codes, train, spec.reads, last_blocked)  # the labels' rows
        if train.any():
            _add_training_rows(fit, src, spec, task, x[train], times[train], labels, y, labelled,
                               bool(all_cycles), barriers is not None)
        row0 += table.num_rows
    if fit.moments is None:
        raise SeqtrainError("data.split: no training rows before the validation period")
    fit.train_moves = np.concatenate(fit.train_moves) if fit.train_moves else None
    return fit


def _built_labels(spec: LabelSpec, task: str, src: Source, target_kind: str, x: np.ndarray, y: np.ndarray,
                  codes: np.ndarray, file_rows: np.ndarray, stream: MoveStream,
                  barriers: BarrierStream | None) -> np.ndarray:
    """A row group's built labels, from the rows carried before it: a triple-barrier class, or
    the log move (its direction, for regression)."""
    _check_label_target(spec, target_kind, src.target)
    check_levels(y, spec.target_kind, src.target, file_rows)
    if barriers is not None:  # the class of each label row, from the rows carried before it
        side = _side(x, src.features, spec, file_rows)
        return barriers.labels(codes, y, side).values
    log_moves = stream.moves(codes, y)
    return labels_from_moves(spec.kind, log_moves, 0.0) if task == "regression" else log_moves


def _add_training_rows(fit: Fit, src: Source, spec: LabelSpec, task: str, x: np.ndarray, times: np.ndarray,
                       labels: np.ndarray, y: np.ndarray, labelled: np.ndarray, calendar: bool,
                       built_by_barriers: bool) -> None:
    """A row group's training rows (``x``, ``times``) and labels (``labelled`` rows) into the
    statistics of pass 2."""
    fit.moments = _merge(fit.moments, x)
    for name, (a, b) in (cycle_ranges(wall_times(times, src.zone)).items() if calendar else ()):
        low, high = fit.cycles.get(name, (a, b))
        fit.cycles[name] = (min(low, a), max(high, b))
    if spec.kind == "direction":  # classes once the dead zone is known (after the pass)
        fit.train_moves.append(labels[labelled & np.isfinite(labels)])
    elif task == "regression":
        defined = labelled & np.isfinite(labels)
        if defined.any():
            fit.target_moments = _merge(fit.target_moments, labels[defined, None])
    else:
        chosen = labels[labelled] if built_by_barriers else y[labelled]
        if built_by_barriers:
            chosen = chosen[~pd.isna(chosen)]
        values, n = np.unique(label_values(chosen, src.target), return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=True):
            fit.label_counts[v] = fit.label_counts.get(v, 0) + c


def _side(x: np.ndarray, features: list[str], spec: LabelSpec, file_rows: np.ndarray) -> np.ndarray | None:
    """The meta-labels' side column among the raw features, checked (+1/-1), or None."""
    if spec.barrier is None or spec.barrier.side is None:
        return None
    side = x[:, features.index(spec.barrier.side)].astype(np.float64)
    check_side(side, spec.barrier.side, file_rows)
    return side


def _check_label_target(spec: LabelSpec, target_kind: str, target: str) -> None:
    if target_kind != "numeric":
        raise SeqtrainError(f"data.label={spec.kind}: the target {target!r} must hold numbers "
                            "(prices, or returns with data.target_kind=return)")


def _check_finite_rows(src: Source, x: np.ndarray, y: np.ndarray, target_kind: str,
                       file_rows: np.ndarray) -> None:
    target = TargetCheck(src.target, y, target_kind, counted=False,
                         fix="clean the files or set data.streaming=false with data.nan_policy=ffill or drop")
    apply_nan_policy("error", x, src.features, file_rows, target=target)


def _features(table: pa.Table, features: list[str]) -> np.ndarray:
    if not features:
        return np.zeros((table.num_rows, 0), np.float32)
    return np.column_stack([float_column(table, c) for c in features])


def _merge(moments, values: np.ndarray):
    """Chan et al.'s parallel update of (count, mean, M2) with a new batch of rows."""
    values = values.astype(np.float64)
    n_b, mean_b = len(values), values.mean(0)
    m2_b = ((values - mean_b) ** 2).sum(0)
    if moments is None:
        return n_b, mean_b, m2_b
    n_a, mean_a, m2_a = moments
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta**2 * n_a * n_b / n


def window_label_counts(src: Source, state: DataState, scan: Scan, splitting: SplitRule,
                         segments: np.ndarray, starts: np.ndarray | None = None
                         ) -> tuple[np.ndarray, dict | None]:
    """Pass 3 (classification), the target column only: class counts among the labels of each
    split's windows ``(3, classes)``, refusing a validation or test window whose label class
    never occurs in training rows: the in-memory rule, row group by row group
    (``last_label_rows``, or ``period_last_label_ok`` with the period ``starts``); built labels
    from the moves carried across row groups. With triple-barrier labels also the windows per
    row group and split (their touch rows decide the purge, so they cannot be counted from row
    numbers alone); else None."""
    classes = state.classes
    counts = np.zeros((3, len(classes)), np.int64)
    counters = np.zeros(len(segments), np.int64)
    index, spec = pd.Index(classes), state.window
    stream = MoveStream(spec.horizon, state.label_target_kind)
    barriers = (BarrierStream(spec.horizon, state.label_target_kind, state.barrier)
                if state.barrier else None)
    side = state.side_column
    windows = {name: np.zeros(len(src.row_groups), np.int64) for name in SPLIT_NAMES} if barriers else None
    for i, row_group in enumerate(src.row_groups):
        columns = [*src.key_columns, src.target, *([side] if side else [])]
        table = src.read(row_group, list(dict.fromkeys(columns)))
        codes = scan.series.codes(table)
        row_number = chunk_row_numbers(codes, counters)
        times = time_values(table.column(src.time_col), src.time_col)
        row_split, row_period = splitting.of_rows(times, codes, row_number)
        values = read_target(table.column(src.target), src.target, state.task)[1]
        touch = None
        if state.label == "value":
            values = label_values(values, src.target)
        elif barriers is not None:
            built = barriers.labels(codes, values, float_column(table, side) if side else None)
            values, touch = built.values, built.touch
        else:
            values = labels_from_moves(state.label, stream.moves(codes, values), state.dead_zone)
        ids = index.get_indexer(values)
        for split, name in enumerate(SPLIT_NAMES):
            if row_period is None:
                rows = spec.label_rows(row_number, row_split, codes, segments, split, touch)
            else:
                rows = period_last_label_ok(row_number, row_period, codes, starts, splitting.periods[1],
                                            split, spec.reads, spec.history, spec.span, spec.stride_of(split),
                                            spec.embargo)
            if split != TRAIN:
                check_known_classes(ids[rows], values[rows], name, classes, src.target, state.label)
            counts[split] += np.bincount(ids[rows], minlength=len(classes))
            if windows is not None:
                windows[name][i] = int(rows.sum())
    return counts, windows
