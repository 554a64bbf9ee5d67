"""Out-of-core windows: Parquet read one row group at a time, never the whole table.

Two cheap passes come first, each holding one row group in memory at a time:

1. ``time`` and ``group`` columns: series names, time-order checks, the time axis (for the
   split) and, per row group, which series it holds and how far back the history of its windows
   reaches (the "halo");
2. every needed column: NaN/inf checks, and the statistics fit on training rows only (scaler
   mean/std by a parallel-variance merge, target scaler, classes), plus rows per series and
   split, from which the exact number of windows per row group follows;
3. (classification) the target column alone: class counts among the labels of the training
   windows, and the check that no validation or test window has a class unseen in training —
   the in-memory definitions, found by the label-row rule ``last_label_rows``.

Then each epoch streams row groups, prepends the last ``L + h + k - 2`` rows of each series
carried from earlier row groups, and cuts windows with the same rule as in memory
(``block_window_ends``). A window belongs to the row group holding its last label row, so
row groups are dealt to DataLoader workers and DDP ranks as contiguous, row-balanced ranges,
each reading its halo first: every window is produced exactly once per epoch.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch.utils.data import IterableDataset, get_worker_info

from seqtrain.data import sharding, source, validate
from seqtrain.data.columns import (
    check_classes,
    check_known_classes,
    class_balance,
    float_column,
    label_values,
    missing_values,
    read_target,
    series_dictionary,
    target_history_is_input,
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
    fit_dead_zone,
    labels_from_moves,
)
from seqtrain.data.periods import (
    period_last_label_ok,
    period_starts,
    period_window_counts,
    period_window_ends,
)
from seqtrain.data.rows import RowBlock, known_label_lag, season_offsets, time_as_number
from seqtrain.data.scaling import StandardScaler
from seqtrain.data.splits import (
    assign_periods,
    assign_splits,
    assign_splits_by_row,
    in_period,
    series_cuts,
    split_boundaries,
    split_by_series,
    split_periods,
    split_record,
)
from seqtrain.data.state import DataState, HasDataState, input_matrix, input_names
from seqtrain.data.time_features import (
    CALENDAR,
    calendar_names,
    cycle_ranges,
    varying_cycles,
)
from seqtrain.data.weights import SampleWeightSpec
from seqtrain.data.windows import (
    SPLIT_NAMES,
    TRAIN,
    WindowSpec,
    block_window_ends,
    chunk_row_numbers,
    segments_from_counts,
    series_bounds,
    training_label_rows,
    window_reach,
)
from seqtrain.errors import SeqtrainError

log = logging.getLogger(__name__)

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value) -> int:
    """``4GB``, ``512MiB`` or a number of bytes."""
    if isinstance(value, (int, float)):
        return int(value)
    match = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in UNITS:
        raise SeqtrainError(f"data.memory_budget: cannot read {value!r}; write e.g. 4GB or 512MiB")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def in_memory_bytes(n_rows: int, n_inputs: int) -> int:
    """What the in-memory path holds per row: float32 inputs and label, time, series, row number,
    and the index arrays of the split (a conservative estimate)."""
    return n_rows * (4 * n_inputs + 4 + 8 + 8 + 8 + 3 * 8)


@dataclass
class StreamData(HasDataState):
    """What the streaming loaders and the report need; the rows themselves stay on disk."""

    dataset: object
    groups: list  # row-group fragments, in stream order
    columns: list[str]  # columns read from each row group
    group_series: list[np.ndarray]  # per row group: series codes present (sorted)
    group_counts: list[np.ndarray]  # per row group: rows of each of those series
    halo_start: np.ndarray  # per row group: first row group its windows read from
    segments: np.ndarray  # (n_series, 3, 2) first/last row number of each split per series
    cuts: np.ndarray | None  # data.split.by=series: per series, first val and test row number
    group_windows: dict[str, np.ndarray]  # split -> windows whose last label row is in each group
    val_start: object
    test_start: object
    contract: DataState  # every fitted statistic, saved as data_state.json
    period: object = None  # data.split (train_start/test_end): rows outside are never read
    periods: tuple | None = None  # data.split.periods: (first timestamps, split ids), else None
    period_starts: np.ndarray | None = None  # (n_series, P+1) rows of each series before each period

    def row_split(self, times: np.ndarray, codes: np.ndarray, row_number: np.ndarray):
        """Split id per row of a chunk, and (split by periods) each row's period, else None."""
        return _row_split(times, codes, row_number, self.cuts, self.val_start, self.test_start, self.periods)


def _row_split(times, codes, row_number, cuts, val_start, test_start, periods):
    if periods is not None:
        row_period = assign_periods(times, periods[0])
        return periods[1][row_period], row_period
    if cuts is None:
        return assign_splits(times, val_start, test_start), None
    return assign_splits_by_row(row_number, codes, cuts), None


@dataclass
class _Source:
    """Where the rows come from and which columns matter."""

    dataset: object
    groups: list
    time_col: str
    group_col: str | None
    target: str
    features: list[str]
    period: object = None  # data.split, when it sets train_start/test_end

    @property
    def zone(self) -> str | None:
        return time_zone(self.dataset.schema, self.time_col)

    def read(self, group, columns: list[str]) -> pa.Table:
        return read_in_period(group, self.dataset.schema, columns, self.time_col, self.period)

    @property
    def key_columns(self) -> list[str]:
        return [self.time_col, *([self.group_col] if self.group_col else [])]


@dataclass
class _Scan:
    """Pass 1: the series, the rows of each in each row group, halos and the time axis."""

    names: dict  # series name -> provisional code (first appearance)
    remap: np.ndarray  # provisional code -> code in sorted name order, as in memory
    series_names: list
    group_series: list[np.ndarray]
    group_counts: list[np.ndarray]
    halo_start: np.ndarray
    axis: np.ndarray  # distinct times (for split fractions), or the first and last (for dates)
    time_dtype: np.dtype
    groups: list  # the row groups that hold rows (of a walk-forward fold's period, when set)


@dataclass
class _Fit:
    """Pass 2: statistics of training rows, and rows per series and split."""

    moments: tuple
    target_moments: tuple | None
    label_counts: dict
    cycles: dict
    split_rows: np.ndarray
    target_kind: str
    train_moves: np.ndarray | None = None  # data.label=direction: log moves of training rows
    period_rows: np.ndarray | None = None  # data.split.periods: rows per series and period


def plan_stream(cfg, task: str, path: str) -> StreamData:
    """The passes described in the module docstring; raise on bad input."""
    validate.check_window_settings(cfg)
    if cfg.nan_policy != "error":
        raise SeqtrainError(
            f"data.nan_policy={cfg.nan_policy} needs the whole table in memory; clean the files "
            "or set data.streaming=false"
        )
    if cfg.sort:
        raise SeqtrainError("data.sort=true needs the whole table in memory; sort the files "
                            "or set data.streaming=false")
    if SampleWeightSpec.from_config(cfg).active:
        raise SeqtrainError("data.sample_weight=uniqueness needs the whole table in memory (a window's "
                            "weight reads the label spans of the windows after it); set "
                            "data.streaming=false or data.sample_weight=none")
    dataset = source.open_dataset(path)
    time_col, group_col, target, features = validate.resolve_columns(dataset.schema, cfg, path)
    fold = cfg.split.get("train_start") is not None or cfg.split.get("test_end") is not None
    period = cfg.split if fold else None
    src = _Source(dataset, source.row_groups(dataset), time_col, group_col, target, features, period)
    scan = _scan_series(src, cfg, path)
    src.groups = scan.groups  # later passes and every epoch skip groups without rows of the period
    by_series = split_by_series(cfg)
    cuts, val_start, test_start = _split_plan(cfg, scan, time_col, by_series, src.zone)
    periods = split_periods(cfg.split, scan.axis, src.zone)
    if cfg.time_features and not np.issubdtype(scan.time_dtype, np.datetime64):
        raise SeqtrainError(f"data.time_features: needs timestamps in {time_col!r}, which holds numbers; "
                            "set data.time_features=false")
    use_target_history = target_history_is_input(cfg, target)
    spec = LabelSpec.from_config(cfg, task)
    if spec.barrier is not None and spec.barrier.side is not None and spec.barrier.side not in features:
        raise SeqtrainError(f"data.barrier.side: column {spec.barrier.side!r} is not an input; add it to "
                            "data.features (the model judges the primary's trade knowing its side)")
    splitting = (cuts, val_start, test_start, periods)
    fitted = _fit_statistics(src, cfg, task, scan, splitting, use_target_history, spec)

    contract = _input_contract(cfg, task, src, scan, fitted, use_target_history)
    contract.label, contract.label_target_kind = spec.kind, spec.target_kind
    contract.barrier = spec.barrier
    if spec.kind == "direction":
        contract.dead_zone, fitted.label_counts = _direction_classes(spec, fitted)
    segments = segments_from_counts(fitted.split_rows)  # each split's row numbers per series
    starts = None if periods is None else period_starts(fitted.period_rows)
    if task == "classification":
        contract.classes = sorted(fitted.label_counts)  # from training rows, as in memory
        check_classes(contract.classes, target)
        by_split, counted = _window_label_counts(src, contract, scan, splitting, segments, starts)
        contract.class_counts, contract.class_weights = class_balance(by_split[TRAIN])
    else:
        contract.target_scaler = _scaler(fitted.target_moments)
        counted = None
    if periods is not None:  # a label counted to t+h, where every touch row lies at the latest
        group_windows = _count_period_windows(scan.group_series, scan.group_counts, starts, periods[1],
                                              contract.window)
    else:  # from row numbers alone, unless label end rows (touch rows) decide the purge: then as
        # pass 3 counted them
        group_windows = counted or _count_windows(scan.group_series, scan.group_counts, segments,
                                                  contract.window)
    windows = {name: int(group_windows[name].sum()) for name in SPLIT_NAMES}
    _refuse_empty_splits(windows, contract.window)
    split = split_record("series" if by_series else "time", val_start, test_start, periods, src.zone)
    by_class = by_split.tolist() if task == "classification" else None
    contract.summarise_fit(split, fitted.split_rows.sum(0), windows, by_class, row_groups=len(src.groups))
    return StreamData(
        dataset=dataset, groups=src.groups, columns=_columns(src), group_series=scan.group_series,
        group_counts=scan.group_counts, halo_start=scan.halo_start, segments=segments,
        cuts=cuts, group_windows=group_windows, val_start=val_start, test_start=test_start,
        contract=contract, period=period, periods=periods, period_starts=starts,
    )


def _input_contract(cfg, task: str, src: _Source, scan: _Scan, fitted: _Fit, use_target_history: bool):
    """The data state of the inputs from pass 2's statistics: the columns (features, the
    calendar columns that vary over training rows, the target's history) and their scaler."""
    columns = (src.time_col, src.group_col, src.target, src.features)
    cycles = varying_cycles(fitted.cycles) if cfg.time_features else []
    history = use_target_history and fitted.target_kind == "numeric"
    inputs = input_names(src.features, cycles, src.target, history)
    scaler = _input_scaler(cfg, fitted.moments, src.features, inputs, calendar_names(cycles),
                           bool(cfg.time_features))
    return DataState.from_fit(cfg, task, columns, cycles=cycles, history=history,
                              target_kind=fitted.target_kind, scaler=scaler, time_dtype=scan.time_dtype,
                              zone=src.zone, series_names=scan.series_names)


def _split_plan(cfg, scan: _Scan, time_col: str, by_series: bool, zone: str | None):
    """``(cuts, val_start, test_start)``: per-series row cuts, or the time axis's boundaries."""
    if cfg.split.get("periods") is not None:
        return None, None, None
    if not by_series:
        return None, *split_boundaries(cfg.split, scan.axis, time_col, zone)
    lengths = np.zeros(len(scan.series_names), np.int64)
    for present, n_rows in zip(scan.group_series, scan.group_counts, strict=True):
        lengths[present] += n_rows
    return series_cuts(lengths, cfg.split.val, cfg.split.test), "per series", "per series"


def _refuse_empty_splits(windows: dict[str, int], spec: WindowSpec) -> None:
    need = spec.rows
    for name, n in windows.items():
        if n == 0:
            raise SeqtrainError(
                f"data.split: the {name} split has no complete window (a window needs {need} rows "
                f"within its split); lower data.seq_length or data.horizon, or give {name} a larger share"
            )


def _columns(src: _Source) -> list[str]:
    return list(dict.fromkeys([*src.key_columns, src.target, *src.features]))


def _scan_series(src: _Source, cfg, path: str) -> _Scan:
    """Pass 1, time and series only: order checks, rows per series and row group, the first
    row group each group's windows read from (its halo), and the time axis. Row groups without
    rows (none of a walk-forward fold's period) are left out of everything after."""
    need = WindowSpec.from_config(cfg).rows  # rows one window spans
    names: dict = {}
    last_time: dict[int, object] = {}
    counts: dict[int, int] = {}
    history: dict[int, tuple[list[int], list[int]]] = {}  # code -> (groups, rows after each)
    group_series, group_counts, halo, distinct, extremes = [], [], [], [], []
    row0, times, kept = 0, None, []
    for group in src.groups:
        table = src.read(group, src.key_columns)
        if table.num_rows == 0:
            continue
        g = len(kept)  # the group's position among those kept
        kept.append(group)
        times = time_values(table.column(src.time_col), src.time_col)
        codes = _provisional_codes(table, src.group_col, names)
        order = np.argsort(codes, kind="stable")
        times, codes = times[order], codes[order]
        _check_order(times, codes, last_time, names, src.time_col, row0 + order)
        present, n_rows = np.unique(codes, return_counts=True)
        back = g
        for code, n in zip(present.tolist(), n_rows.tolist(), strict=True):
            before = counts.get(code, 0)
            first_needed = max(before - (need - 1), 0)
            if first_needed < before:
                chunks, cum = history[code]
                back = min(back, chunks[bisect.bisect_right(cum, first_needed)])
            counts[code] = before + n
            chunks, cum = history.setdefault(code, ([], []))
            chunks.append(g)
            cum.append(before + n)
        group_series.append(present)
        group_counts.append(n_rows)
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
    provisional = list(names)
    order = sorted(range(len(provisional)), key=lambda i: provisional[i])
    remap = np.empty(len(order), np.int64)
    remap[order] = np.arange(len(order))
    group_series = [remap[s] for s in group_series]
    for g in range(len(kept)):
        sort = np.argsort(group_series[g])
        group_series[g], group_counts[g] = group_series[g][sort], group_counts[g][sort]
    axis = np.unique(np.concatenate(distinct)) if distinct else np.asarray(extremes, dtype=times.dtype)
    return _Scan(names, remap, [provisional[i] for i in order], group_series, group_counts,
                 np.asarray(halo, np.int64), axis, times.dtype, kept)


def _fit_statistics(src: _Source, cfg, task: str, scan: _Scan, splitting: tuple,
                    use_target_history: bool, spec: LabelSpec) -> _Fit:
    """Pass 2, every needed column: NaN/inf checks on all rows; on training rows the input
    moments (every calendar cycle: those constant over training rows are dropped after), the
    calendar ranges, the target's moments or class counts; rows per series and split (and per
    series and period, split by periods). ``splitting``: the arguments of ``_row_split``."""
    all_cycles = list(CALENDAR) if cfg.time_features else []
    columns = _columns(src)
    split_rows = np.zeros((len(scan.series_names), 3), np.int64)
    periods = splitting[-1]
    period_rows = None if periods is None else np.zeros((len(scan.series_names), len(periods[1])), np.int64)
    moments = target_moments = None
    label_counts: dict = {}
    cycles: dict[str, tuple[float, float]] = {}
    target_kind = "numeric"
    counters = np.zeros(len(scan.series_names), np.int64)
    last_blocked = np.full(len(scan.series_names), -1, np.int64)  # training_label_rows' carry
    row0 = 0
    stream, train_moves = MoveStream(spec.horizon, spec.target_kind), []
    barriers = BarrierStream(spec.horizon, spec.target_kind, spec.barrier) if spec.barrier else None
    for group in src.groups:
        table = src.read(group, columns)
        times = time_values(table.column(src.time_col), src.time_col)
        codes = scan.remap[_provisional_codes(table, src.group_col, scan.names)]
        x = _features(table, src.features)
        target_kind, y = read_target(table.column(src.target), src.target, task)
        _check_finite_rows(src, x, y, target_kind, row0 + np.arange(table.num_rows))
        labels = y
        if spec.builds:  # the move over the horizon ending at each row (carried across row groups)
            _check_label_target(spec, target_kind, src.target)
            check_levels(y, spec.target_kind, src.target, row0 + np.arange(table.num_rows))
            if barriers is not None:  # the class of each label row, from the rows carried before it
                side = _side(x, src.features, spec, row0 + np.arange(table.num_rows))
                labels = barriers.labels(codes, y, side).values
            else:
                log_moves = stream.moves(codes, y)
                labels = labels_from_moves(spec.kind, log_moves, 0.0) if task == "regression" else log_moves
        history = use_target_history and target_kind == "numeric"
        x = input_matrix(x, times, all_cycles, y if history else None, src.zone)
        row_number = chunk_row_numbers(codes, counters)
        row_split, row_period = _row_split(times, codes, row_number, *splitting)
        np.add.at(split_rows, (codes, row_split), 1)
        if row_period is not None:
            np.add.at(period_rows, (codes, row_period), 1)
        train = row_split == TRAIN
        labelled = training_label_rows(row_number, codes, train, spec.reads, last_blocked)  # the labels' rows
        if train.any():
            moments = _merge(moments, x[train])
            for name, (a, b) in (cycle_ranges(wall_times(times[train], src.zone)).items()
                                 if all_cycles else ()):
                low, high = cycles.get(name, (a, b))
                cycles[name] = (min(low, a), max(high, b))
            if spec.kind == "direction":  # classes once the dead zone is known (after the pass)
                train_moves.append(labels[labelled & np.isfinite(labels)])
            elif task == "regression":
                defined = labelled & np.isfinite(labels)
                if defined.any():
                    target_moments = _merge(target_moments, labels[defined, None])
            else:
                chosen = labels[labelled] if barriers is not None else y[labelled]
                if barriers is not None:
                    chosen = chosen[~pd.isna(chosen)]
                values, n = np.unique(label_values(chosen, src.target), return_counts=True)
                for v, c in zip(values.tolist(), n.tolist(), strict=True):
                    label_counts[v] = label_counts.get(v, 0) + c
        row0 += table.num_rows
    if moments is None:
        raise SeqtrainError("data.split: no training rows before the validation period")
    moves_seen = np.concatenate(train_moves) if train_moves else None
    return _Fit(moments, target_moments, label_counts, cycles, split_rows, target_kind, moves_seen,
                period_rows)


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


def _direction_classes(spec: LabelSpec, fitted: _Fit) -> tuple[float, dict]:
    """The dead zone (fit on training moves when a quantile) and the classes of training rows."""
    dead_zone = fit_dead_zone(spec, fitted.train_moves)
    classes = labels_from_moves("direction", fitted.train_moves, dead_zone)
    values, counts = np.unique(classes.astype(str), return_counts=True)
    return dead_zone, dict(zip(values.tolist(), counts.tolist(), strict=True))


def _check_finite_rows(src: _Source, x: np.ndarray, y: np.ndarray, target_kind: str,
                       file_rows: np.ndarray) -> None:
    for j, name in enumerate(src.features):
        validate.check_finite(name, "data.features", x[:, j], file_rows)
    bad = missing_values(y, target_kind)
    if bad.any():
        raise SeqtrainError(
            f"data.target: column {src.target!r} has NaN/inf value(s), first at row "
            f"{file_rows[validate.first_bad(bad)]}; clean the files or set data.streaming=false "
            "with data.nan_policy=ffill or drop"
        )


def _input_scaler(cfg, moments, features, input_names, calendar_names, time_features) -> StandardScaler:
    """The scaler of the kept input columns, from pass 2's moments over every computed column."""
    if cfg.scaler != "standard":
        return StandardScaler.identity(len(input_names))
    all_cycles = list(CALENDAR) if time_features else []
    computed = [*features, *(f"{c}_{f}" for c in all_cycles for f in ("sin", "cos")),
                *input_names[len(features) + len(calendar_names):]]
    kept = [computed.index(name) for name in input_names]
    return _scaler((moments[0], moments[1][kept], moments[2][kept]))


def shard_ranges(weights: np.ndarray, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous ranges of row groups, one per shard, with about equal total weight each."""
    cumulative = np.concatenate([[0], np.cumsum(weights)])
    cuts = np.searchsorted(cumulative, np.linspace(0, cumulative[-1], n_shards + 1), side="left")
    cuts[0], cuts[-1] = 0, len(weights)
    cuts = np.maximum.accumulate(cuts)
    return [(int(cuts[i]), int(cuts[i + 1])) for i in range(n_shards)]


class StreamingWindows(IterableDataset):
    """Batches of the windows of one split, streamed from row groups.

    Each DDP rank takes a contiguous share of the split's windows (in stream order) and reads only
    the row groups that hold it; each of its DataLoader workers reads its own contiguous range of
    those (after its halo). Under DDP every rank yields the same number of training batches
    (``sharding``). Training batches are shuffled through a buffer of ``shuffle_buffer`` windows;
    evaluation batches come in stream order. ``rank``/``world_size`` default to
    ``torch.distributed``'s when it is initialised.
    """

    def __init__(self, data: StreamData, split: str, batch_size: int, shuffle: bool,
                 shuffle_buffer: int = 8192, num_workers: int = 0,
                 rank: int | None = None, world_size: int | None = None, identify: bool | None = None,
                 seed: int = 0, season: int = 0):
        super().__init__()
        # the shuffle of each pass comes from (seed, epoch, rank, worker): reproducible, new every
        # epoch, and independent of when a loader creates its workers; the epoch lives in shared
        # memory so that persistent workers see the main process's ``set_epoch``
        self.seed = int(seed)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        # training batches need no identity or times: only evaluation maps outputs back to rows
        self.identify = split != "train" if identify is None else identify
        self.data, self.split, self.split_id = data, split, SPLIT_NAMES.index(split)
        self.batch_size, self.shuffle, self.shuffle_buffer = batch_size, shuffle, shuffle_buffer
        self.num_workers, self.rank, self.world_size = num_workers, rank, world_size
        spec = data.contract.window
        self.stride, self.embargo = spec.stride_of(self.split_id), spec.embargo  # the split's, saved
        self.seq_length, self.horizon, self.steps = spec.seq_length, spec.horizon, spec.output_steps
        self.need = spec.rows
        self.season = season
        # rows kept per series for the next chunk: a window's history, its latest known label
        # and its seasonal-naive rows (a regression baseline)
        self.known_lag = known_label_lag(spec.horizon, spec.embargo)
        back = self.known_lag or 0
        if season and self.known_lag is not None and data.task == "regression":
            back = max(back, int(-season_offsets(spec.horizon, spec.output_steps, season, back).min()))
        # a built label reads rows before its row (a move h, a triple-barrier label also the
        # volatility's): each chunk is labelled after that many carried rows, and the first
        # chunk read reaches that much further back, so the earliest carried labels are as in memory
        self.keep = max(self.need - 1, spec.span + back, data.contract.label_reach)
        self.reach = self.keep + data.contract.label_reach
        self.history = spec.history
        # shards are balanced by this split's windows, so every reader gets a fair share
        self.group_weight = data.group_windows[split]
        self.windows_before = np.concatenate([[0], np.cumsum(self.group_weight)])  # per row group
        self.known_columns = [data.input_names.index(c) for c in data.known_future]
        self.series_index = pd.Index(data.series_names)  # name -> code, built once

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose shuffle the next pass draws."""
        self._epoch.fill_(int(epoch))

    def _world(self) -> tuple[int, int]:
        if self.rank is not None:
            return self.rank, self.world_size or 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _ranges(self, workers: int, rank: int | None = None) -> list[tuple[int, int]]:
        """A rank's row-group range split over its ``workers`` (balanced by windows): under DDP
        the row groups holding the rank's share of the windows (``_window_share``)."""
        own, world = self._world()
        rank = own if rank is None else rank
        if world > 1:
            first, last = self._window_share(rank)
            lo = int(np.searchsorted(self.windows_before, first, side="right")) - 1
            hi = max(lo, int(np.searchsorted(self.windows_before, last, side="left")))
        else:
            lo, hi = 0, len(self.group_weight)
        return [(lo + a, lo + b) for a, b in shard_ranges(self.group_weight[lo:hi], workers)]

    def _window_share(self, rank: int) -> tuple[int, int]:
        """DDP: the rank's contiguous share of the split's windows, counted in stream order (row
        group by row group): every window once, shares within one window of each other, and each
        rank reads only the row groups of its share (and their halo)."""
        return sharding.share(int(self.windows_before[-1]), rank, self._world()[1])

    def _reader_windows(self, workers: int, rank: int | None = None) -> list[int]:
        """Windows each of a rank's readers yields: its row groups' windows within the rank's
        share (in one process the share is every window)."""
        first, last = self._window_share(self._world()[0] if rank is None else rank)
        before = self.windows_before
        return [max(0, min(last, int(before[hi])) - max(first, int(before[lo])))
                for lo, hi in self._ranges(workers, rank)]

    def _batch_counts(self, workers: int) -> list[int]:
        """Batches each of this rank's readers yields. Training under DDP: every rank the same
        total (``sharding.common_batches``), each reader's windows split into near-equal batches."""
        counts = self._reader_windows(workers)
        world = self._world()[1]
        if world == 1 or not self.shuffle:
            return [math.ceil(n / self.batch_size) for n in counts]
        total = sharding.common_batches([self._reader_windows(workers, r) for r in range(world)],
                                        self.batch_size)
        return sharding.reader_batches(counts, total, self.batch_size)

    def __len__(self) -> int:
        """Batches this rank yields per epoch (all its workers together)."""
        return sum(self._batch_counts(max(self.num_workers, 1)))

    def __iter__(self):
        info = get_worker_info()
        epoch = int(self._epoch)
        if info is None:  # iterated directly, not by a loader: the next pass shuffles anew
            self._epoch += 1
        workers, reader = (info.num_workers, info.id) if info else (1, 0)
        lo, hi = self._ranges(workers)[reader]
        rank, world = self._world()
        sizes = None  # training under DDP: this reader's planned batch sizes
        if world > 1 and self.shuffle:
            windows = self._reader_windows(workers)[reader]
            sizes = sharding.even_sizes(windows, self._batch_counts(workers)[reader]).tolist()
        keep = self._window_share(rank) if world > 1 else None
        seen = int(self.windows_before[lo])  # windows before this reader's first row group
        holding = np.flatnonzero(self.group_weight[lo:hi])  # row groups with windows of this split
        if len(holding) == 0:
            return
        lo, hi = lo + int(holding[0]), lo + int(holding[-1]) + 1  # the rest is never read
        rng = np.random.default_rng([self.seed, epoch, rank, reader])
        start = self._first_group(lo, hi)
        counters = np.zeros(len(self.data.series_names), np.int64)
        for g in range(start):
            counters[self.data.group_series[g]] += self.data.group_counts[g]
        carry, pending = None, []
        for g in range(start, hi):
            block, is_new = self._block(g, carry, counters)
            if g >= lo:
                ends = self._ends(block, is_new)
                if keep is not None:  # DDP: only this rank's share of the windows
                    index = seen + np.arange(len(ends))
                    seen += len(ends)
                    ends = ends[(index >= keep[0]) & (index < keep[1])]
                if len(ends):
                    pending.append(self._windows(block, ends))
                    if sum(len(p["y"]) for p in pending) >= (self.shuffle_buffer if self.shuffle
                                                             else self.batch_size):
                        pending = yield from self._emit(pending, rng, final=False, sizes=sizes)
            carry = self._carry(block)
        yield from self._emit(pending, rng, final=True, sizes=sizes)

    def _block(self, g: int, carry: dict | None, counters: np.ndarray):
        """Row group ``g`` with the carried rows before it, grouped by series, as tensors."""
        data = self.data
        table = read_in_period(data.groups[g], data.dataset.schema, data.columns, data.time_col,
                               data.period)
        times = time_values(table.column(data.time_col), data.time_col)
        codes = _codes(table, data.group_col, self.series_index)
        _, y = read_target(table.column(data.target), data.target, data.task)
        contract = data.contract
        x = contract.model_inputs(contract.raw_inputs(table), times, y)
        built = contract.label != "value"  # moves read earlier rows: labelled after joining the carry
        labels = (np.zeros(len(y), np.float32 if data.task == "regression" else np.int64) if built
                  else contract.encode_labels(y, np.array([0, len(y)])))
        order = np.argsort(codes, kind="stable")
        codes, times, x, labels, y = codes[order], times[order], x[order], labels[order], y[order]
        row_number = chunk_row_numbers(codes, counters)
        new = {"x": x, "labels": labels, "times": time_as_number(times), "series": codes,
               "row_number": row_number, "target": y}
        side = contract.side_column
        if side is not None:  # the meta-labels' side, read at window ends
            new["side"] = float_column(table, side).astype(np.float64)[order]
        if contract.barrier is not None:
            new["touch"] = np.zeros(len(y), np.int64)
        if carry is not None:
            new = {k: np.concatenate([carry[k], v]) for k, v in new.items()}
        is_new = np.concatenate([np.zeros(len(carry["series"]) if carry else 0, bool),
                                 np.ones(len(codes), bool)])
        order = np.argsort(new["series"], kind="stable")  # carried rows stay before new rows
        block, is_new = {k: v[order] for k, v in new.items()}, is_new[order]
        if built:  # each row labelled once, when new, with the rows before it in the block
            made = contract.build_labels(block["target"], series_bounds(block["series"]), block.get("side"))
            block["labels"][is_new] = contract.encode_values(made.values)[is_new]
            if made.touch is not None:
                block["touch"][is_new] = made.touch[is_new]
            moves = contract.realised_moves(made.moves)
            if moves is not None:  # read at label rows only, whose h rows before are in the block
                block["moves"] = moves
        return block, is_new

    def _windows(self, block: dict, ends: np.ndarray) -> dict:
        rows = RowBlock(
            torch.from_numpy(np.ascontiguousarray(block["x"])), torch.from_numpy(block["labels"]),
            torch.from_numpy(block["times"]), torch.from_numpy(block["series"]),
            torch.from_numpy(block["row_number"]), self.seq_length, self.horizon, self.steps,
            self.data.task == "classification", self.known_columns, self.data.contract.window.pad_short,
            self.season, torch.from_numpy(block["moves"]) if "moves" in block else None, self.known_lag,
        )
        return rows.batch(torch.from_numpy(ends), identify=self.identify)

    def _ends(self, block: dict, is_new: np.ndarray) -> np.ndarray:
        bounds = series_bounds(block["series"])
        times = block["times"]
        if self.data.contract.time_dtype.startswith("datetime64"):
            times = times.view("datetime64[ns]")
        row_split, row_period = self.data.row_split(times, block["series"], block["row_number"])
        present = block["series"][bounds[:-1]]
        if row_period is None:
            reach = (window_reach(block["touch"], bounds, self.horizon, self.data.contract.window.span)
                     if "touch" in block else None)
            ends = block_window_ends(bounds, block["row_number"], row_split, self.data.segments[present],
                                     self.split_id, self.history, self.horizon, self.steps, self.stride,
                                     self.embargo, reach)
        else:  # a label counted to t+h, where every touch row lies at the latest
            ends = period_window_ends(bounds, block["row_number"], row_period,
                                      self.data.period_starts[present], self.data.periods[1], self.split_id,
                                      self.data.contract.window.reads, self.history, self.horizon, self.steps,
                                      self.stride, self.embargo)
        return ends[is_new[ends + self.horizon + self.steps - 1]]

    def _first_group(self, lo: int, hi: int) -> int:
        """The first row group to read for the windows of groups ``lo .. hi-1``: the halo of their
        history, reaching back ``reach`` rows of each of their series, so that the latest known
        label and the seasonal rows (and, for a move label, the rows it moves from) are read as
        in memory (not cut off at a chunk's edge). A series with fewer rows before ``lo`` wants
        them all, and one listed later none (not a read back to the table's start)."""
        start = int(self.data.halo_start[lo:hi].min())
        before = np.zeros(len(self.data.series_names), np.int64)  # rows of each series before lo
        for g in range(lo):
            before[self.data.group_series[g]] += self.data.group_counts[g]
        wanted = {int(c): min(self.reach, int(before[c])) for g in range(lo, hi)
                  for c in self.data.group_series[g] if before[c]}
        g = lo
        while g > 0 and wanted:
            g -= 1
            for code, n in zip(self.data.group_series[g].tolist(), self.data.group_counts[g].tolist(),
                               strict=True):
                if code in wanted:
                    wanted[code] -= n
                    if wanted[code] <= 0:
                        del wanted[code]
        return min(start, g)

    def _carry(self, block: dict) -> dict:
        """The last ``need - 1`` rows of each series: all the history a later window can read."""
        series = block["series"]
        after = np.searchsorted(series, series, side="right") - np.arange(len(series))
        keep = after <= self.keep
        return {k: v[keep] for k, v in block.items()}

    def _emit(self, pending: list[dict], rng, final: bool, sizes: list[int] | None = None):
        """Yield full batches (shuffled when training); return what is left for later. ``sizes``:
        the planned sizes of the batches still to come (training under DDP), consumed here."""
        batch = {k: torch.cat([p[k] for p in pending]) for k in pending[0]} if pending else None
        if batch is None:
            return []
        n = len(batch["y"])
        if self.shuffle:
            order = torch.from_numpy(rng.permutation(n))
            batch = {k: v[order] for k, v in batch.items()}
        if sizes is None:
            full = n if final else n - n % self.batch_size
            cuts = [*range(0, full, self.batch_size), full]
        else:  # as many planned batches as the windows at hand fill (all of them at the end)
            cuts = [0]
            while sizes and (final or cuts[-1] + sizes[0] <= n):
                cuts.append(min(n, cuts[-1] + sizes.pop(0)))
            full = cuts[-1]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            yield {k: v[a:b] for k, v in batch.items()}
        return [{k: v[full:] for k, v in batch.items()}] if full < n else []


def read_in_period(group, schema: pa.Schema, columns: list[str], time_col: str, period) -> pa.Table:
    """One row group's ``columns``, only its rows within a walk-forward fold's period
    (``data.split`` train_start/test_end) when one is set: the passes and every epoch see the
    same rows as the in-memory path after ``keep_period``."""
    table = source.read_row_group(group, schema, columns)
    if period is None:
        return table
    keep = in_period(period, time_values(table.column(time_col), time_col), time_zone(schema, time_col))
    return table if keep.all() else table.filter(pa.array(keep))


def _provisional_codes(table: pa.Table, group_col: str | None, names: dict) -> np.ndarray:
    """Series codes in order of first appearance (``names`` grows as new series appear)."""
    values, index = series_dictionary(table, group_col)
    lookup = np.asarray([names.setdefault(v, len(names)) for v in values], np.int64)
    return lookup[index]


def _codes(table: pa.Table, group_col: str | None, series_index: pd.Index) -> np.ndarray:
    """Series codes of a chunk's rows; ``series_index`` holds the sorted series names."""
    if group_col is None:
        return np.zeros(table.num_rows, np.int64)
    names, index = series_dictionary(table, group_col)
    return series_index.get_indexer(pd.Index(names))[index]


class _NamesByCode:
    """Series names by provisional code (``names`` keeps insertion order, so codes are positions),
    built only when an error names a series."""

    def __init__(self, names: dict):
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, code) -> object:
        return list(self.names)[int(code)]


def _check_order(times, codes, last_time: dict, names: dict, time_col: str, file_rows) -> None:
    starts = np.concatenate([[0], np.flatnonzero(codes[1:] != codes[:-1]) + 1])
    firsts = codes[starts]
    previous = np.asarray([last_time.get(c) is not None for c in firsts.tolist()])
    if previous.any():
        earlier = np.asarray([last_time[c] for c in firsts[previous].tolist()], dtype=times.dtype)
        step = times[starts[previous]]
        bad = step <= earlier
        if bad.any():
            i = starts[previous][bad][0]
            series = _NamesByCode(names)[codes[i]]
            what = "has duplicate timestamps" if step[bad][0] == earlier[bad][0] else "is not sorted"
            raise SeqtrainError(
                f"data.time_col: {time_col!r} {what} in series {series!r} across row groups "
                f"(row {file_rows[i]}: {times[i]}); sort the files by time within each series"
            )
    validate.check_time_order(times, codes, _NamesByCode(names), file_rows, time_col)
    ends = np.concatenate([starts[1:], [len(codes)]]) - 1
    for c, t in zip(codes[ends].tolist(), times[ends], strict=True):
        last_time[c] = t


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


def _scaler(moments) -> StandardScaler:
    return StandardScaler.from_moments(*moments)


def _window_label_counts(src: _Source, contract: DataState, scan: _Scan, splitting: tuple,
                         segments: np.ndarray, starts: np.ndarray | None = None
                         ) -> tuple[np.ndarray, dict | None]:
    """Pass 3 (classification), the target column only: class counts among the labels of each
    split's windows ``(3, classes)``, refusing a validation or test window whose label class
    never occurs in training rows: the in-memory rule, row group by row group
    (``last_label_rows``, or ``period_last_label_ok`` with the period ``starts``); built labels
    from the moves carried across row groups. With triple-barrier labels also the windows per
    row group and split (their touch rows decide the purge, so they cannot be counted from row
    numbers alone); else None."""
    classes = contract.classes
    counts = np.zeros((3, len(classes)), np.int64)
    counters = np.zeros(len(segments), np.int64)
    index, spec = pd.Index(classes), contract.window
    stream = MoveStream(spec.horizon, contract.label_target_kind)
    barriers = (BarrierStream(spec.horizon, contract.label_target_kind, contract.barrier)
                if contract.barrier else None)
    side = contract.side_column
    windows = {name: np.zeros(len(src.groups), np.int64) for name in SPLIT_NAMES} if barriers else None
    for g, group in enumerate(src.groups):
        columns = [*src.key_columns, src.target, *([side] if side else [])]
        table = src.read(group, list(dict.fromkeys(columns)))
        codes = scan.remap[_provisional_codes(table, src.group_col, scan.names)]
        row_number = chunk_row_numbers(codes, counters)
        times = time_values(table.column(src.time_col), src.time_col)
        row_split, row_period = _row_split(times, codes, row_number, *splitting)
        values = read_target(table.column(src.target), src.target, contract.task)[1]
        touch = None
        if contract.label == "value":
            values = label_values(values, src.target)
        elif barriers is not None:
            built = barriers.labels(codes, values, float_column(table, side) if side else None)
            values, touch = built.values, built.touch
        else:
            values = labels_from_moves(contract.label, stream.moves(codes, values), contract.dead_zone)
        ids = index.get_indexer(values)
        for split, name in enumerate(SPLIT_NAMES):
            if row_period is None:
                rows = spec.label_rows(row_number, row_split, codes, segments, split, touch)
            else:
                rows = period_last_label_ok(row_number, row_period, codes, starts, splitting[-1][1], split,
                                            spec.reads, spec.history, spec.span, spec.stride_of(split),
                                            spec.embargo)
            if split != TRAIN:
                check_known_classes(ids[rows], values[rows], name, classes, src.target, contract.label)
            counts[split] += np.bincount(ids[rows], minlength=len(classes))
            if windows is not None:
                windows[name][g] = int(rows.sum())
    return counts, windows


def _count_windows(group_series, group_counts, segments, spec: WindowSpec) -> dict[str, np.ndarray]:
    """Windows per row group and split, from row numbers alone (the rule of
    ``block_window_ends``, counted instead of listed)."""
    span = spec.span  # last label row = end row + span
    out = {name: np.zeros(len(group_series), np.int64) for name in SPLIT_NAMES}
    seen = np.zeros(len(segments), np.int64)
    for g, (series, counts) in enumerate(zip(group_series, group_counts, strict=True)):
        first_row, last_row = seen[series], seen[series] + counts - 1  # rows of this group
        seen[series] += counts
        for split, name in enumerate(SPLIT_NAMES):
            seg_first, seg_last = segments[series, split, 0], segments[series, split, 1]
            stride, embargo = spec.stride_of(split), spec.embargo_of(split)
            low = np.maximum.reduce([first_row, np.full_like(first_row, spec.history - 1 + span),
                                     seg_first + span + embargo])
            high = np.minimum(last_row, seg_last)
            valid = (seg_first >= 0) & (high >= low)
            # last label rows l in [low, high] with (seg_last - l) % stride == 0
            n = np.where(valid, (seg_last - low) // stride - (seg_last - high + stride - 1) // stride + 1, 0)
            out[name][g] = int(np.maximum(n, 0).sum())
    return out


def _count_period_windows(group_series, group_counts, starts: np.ndarray, roles: np.ndarray,
                          spec: WindowSpec) -> dict[str, np.ndarray]:
    """``_count_windows`` for a split by periods (``period_window_counts``)."""
    out = {name: np.zeros(len(group_series), np.int64) for name in SPLIT_NAMES}
    seen = np.zeros(len(starts), np.int64)
    for g, (series, counts) in enumerate(zip(group_series, group_counts, strict=True)):
        first_row, last_row = seen[series], seen[series] + counts - 1
        seen[series] += counts
        for split, name in enumerate(SPLIT_NAMES):
            out[name][g] = int(period_window_counts(first_row, last_row, starts[series], roles, split,
                                                    spec.reads, spec.history, spec.span,
                                                    spec.stride_of(split), spec.embargo).sum())
    return out
