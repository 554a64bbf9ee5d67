"""Out-of-core data: the plan of a Parquet table read one row group at a time, never whole.

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

Each epoch then streams the windows (``stream_windows.StreamingWindows``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqtrain.data import source, validate
from seqtrain.data.columns import check_classes, class_balance, target_history_is_input
from seqtrain.data.labels import LabelSpec, fit_dead_zone, labels_from_moves
from seqtrain.data.periods import period_starts, period_window_counts
from seqtrain.data.scaling import StandardScaler
from seqtrain.data.splits import (
    SplitRule,
    series_cuts,
    split_boundaries,
    split_by_series,
    split_periods,
    split_record,
)
from seqtrain.data.state import DataState, HasDataState, input_names
from seqtrain.data.statics import StaticSpec, trained_series
from seqtrain.data.stream_passes import Fit, Scan, Source, fit_statistics, scan_series, window_label_counts
from seqtrain.data.time_features import CALENDAR, calendar_names, varying_cycles
from seqtrain.data.weights import SampleWeightSpec
from seqtrain.data.windows import SPLIT_NAMES, TRAIN, WindowSpec, segments_from_counts
from seqtrain.errors import SeqtrainError


@dataclass
class StreamData(HasDataState):
    """What the streaming loaders and the report need; the rows themselves stay on disk."""

    dataset: object
    row_groups: list  # row-group fragments, in stream order
    columns: list[str]  # columns read from each row group
    row_group_series: list[np.ndarray]  # per row group: series codes present (sorted)
    row_group_counts: list[np.ndarray]  # per row group: rows of each of those series
    halo_start: np.ndarray  # per row group: first row group its windows read from
    segments: np.ndarray  # (n_series, 3, 2) first/last row number of each split per series
    cuts: np.ndarray | None  # data.split.by=series: per series, first val and test row number
    row_group_windows: dict[str, np.ndarray]  # split -> windows whose last label row is in each row group
    val_start: object
    test_start: object
    state: DataState  # every fitted statistic, saved as data_state.json
    period: object = None  # data.split (train_start/test_end): rows outside are never read
    periods: tuple | None = None  # data.split.periods: (first timestamps, split ids), else None
    period_starts: np.ndarray | None = None  # (n_series, P+1) rows of each series before each period

    def row_split(self, times: np.ndarray, codes: np.ndarray, row_number: np.ndarray):
        """Split id per row of a chunk, and (split by periods) each row's period, else None."""
        rule = SplitRule(self.cuts, self.val_start, self.test_start, self.periods)
        return rule.of_rows(times, codes, row_number)


def plan_stream(cfg, task: str, path: str, series_embedding: bool = False) -> StreamData:
    """The passes described in the module docstring; raise on bad input. ``series_embedding``:
    the series id is an input (a code column, ``statics.py``)."""
    validate.check_window_settings(cfg)
    _check_streamable(cfg)
    dataset = source.open_dataset(path)
    time_col, group_col, target, features = validate.resolve_columns(dataset.schema, cfg, path)
    fold = cfg.split.get("train_start") is not None or cfg.split.get("test_end") is not None
    period = cfg.split if fold else None
    src = Source(dataset, source.row_groups(dataset), time_col, group_col, target, features, period)
    scan = scan_series(src, cfg, path)
    src.row_groups = scan.row_groups  # later passes and epochs skip row groups with no rows of the period
    by_series = split_by_series(cfg)
    cuts, val_start, test_start = _split_plan(cfg, scan, time_col, by_series, src.zone)
    periods = split_periods(cfg.split, scan.axis, src.zone)
    _check_time_features(cfg, scan, time_col)
    use_target_history = target_history_is_input(cfg, target)
    spec = LabelSpec.from_config(cfg, task)
    _check_side_is_input(spec, features)
    splitting = SplitRule(cuts, val_start, test_start, periods)
    fitted = fit_statistics(src, cfg, task, scan, splitting, use_target_history, spec)

    state = _input_state(cfg, task, src, scan, fitted, use_target_history, series_embedding)
    state.label, state.label_target_kind = spec.kind, spec.target_kind
    state.barrier = spec.barrier
    if spec.kind == "direction":
        state.dead_zone, fitted.label_counts = _direction_classes(spec, fitted)
    segments = segments_from_counts(fitted.split_rows)  # each split's row numbers per series
    starts = None if periods is None else period_starts(fitted.period_rows)
    if task == "classification":
        state.classes = sorted(fitted.label_counts)  # from training rows, as in memory
        check_classes(state.classes, target)
        by_split, counted = window_label_counts(src, state, scan, splitting, segments, starts)
        state.class_counts, state.class_weights = class_balance(by_split[TRAIN])
    else:
        state.target_scaler = _scaler(fitted.target_moments)
        counted = None
    if periods is not None:  # a label counted to t+h, where every touch row lies at the latest
        row_group_windows = _count_period_windows(scan.row_group_series, scan.row_group_counts, starts,
                                                  periods[1], state.window)
    else:  # from row numbers alone, unless label end rows (touch rows) decide the purge: then as
        # pass 3 counted them
        row_group_windows = counted or _count_windows(scan.row_group_series, scan.row_group_counts,
                                                      segments, state.window)
    windows = {name: int(row_group_windows[name].sum()) for name in SPLIT_NAMES}
    _refuse_empty_splits(windows, state.window)
    split = split_record("series" if by_series else "time", val_start, test_start, periods, src.zone)
    by_class = by_split.tolist() if task == "classification" else None
    state.summarise_fit(split, fitted.split_rows.sum(0), windows, by_class, row_groups=len(src.row_groups))
    return StreamData(
        dataset=dataset, row_groups=src.row_groups, columns=src.columns,
        row_group_series=scan.row_group_series, row_group_counts=scan.row_group_counts,
        halo_start=scan.halo_start, segments=segments, cuts=cuts, row_group_windows=row_group_windows,
        val_start=val_start, test_start=test_start, state=state, period=period, periods=periods,
        period_starts=starts,
    )


def _input_state(cfg, task: str, src: Source, scan: Scan, fitted: Fit, use_target_history: bool,
                 series_embedding: bool = False):
    """The data state of the inputs from pass 2's statistics: the columns (features, the series
    id's code column with ``series_embedding``, knowing the series with training rows, the
    calendar columns that vary over training rows, the target's history) and their scaler
    (codes left as they are)."""
    columns = (src.time_col, src.group_col, src.target, src.features)
    cycles = varying_cycles(fitted.cycles) if cfg.time_features else []
    history = use_target_history and fitted.target_kind == "numeric"
    inputs = input_names(src.features, cycles, src.target, history)
    scaler = _input_scaler(cfg, fitted.moments, src.features, inputs, calendar_names(cycles),
                           bool(cfg.time_features))
    trained = np.flatnonzero(fitted.split_rows[:, TRAIN])
    static = StaticSpec(series=trained_series(scan.series_names, trained) if series_embedding else None,
                        series_col=src.group_col)
    scaler = scaler.with_identity(len(src.features), len(static.code_names))
    return DataState.from_fit(cfg, task, columns, cycles=cycles, history=history,
                              target_kind=fitted.target_kind, scaler=scaler, time_dtype=scan.time_dtype,
                              zone=src.zone, series_names=scan.series_names, static=static)


def _split_plan(cfg, scan: Scan, time_col: str, by_series: bool, zone: str | None):
    """``(cuts, val_start, test_start)``: per-series row cuts, or the time axis's boundaries."""
    if cfg.split.get("periods") is not None:
        return None, None, None
    if not by_series:
        return None, *split_boundaries(cfg.split, scan.axis, time_col, zone)
    lengths = np.zeros(len(scan.series_names), np.int64)
    for present, n_rows in zip(scan.row_group_series, scan.row_group_counts, strict=True):
        lengths[present] += n_rows
    return series_cuts(lengths, cfg.split.val, cfg.split.test), "per series", "per series"


def _check_streamable(cfg) -> None:
    """Settings that need the whole table in memory."""
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


def _check_time_features(cfg, scan: Scan, time_col: str) -> None:
    if cfg.time_features and not np.issubdtype(scan.time_dtype, np.datetime64):
        raise SeqtrainError(f"data.time_features: needs timestamps in {time_col!r}, which holds numbers; "
                            "set data.time_features=false")


def _check_side_is_input(spec: LabelSpec, features: list[str]) -> None:
    if spec.barrier is not None and spec.barrier.side is not None and spec.barrier.side not in features:
        raise SeqtrainError(f"data.barrier.side: column {spec.barrier.side!r} is not an input; add it to "
                            "data.features (the model judges the primary's trade knowing its side)")


def _refuse_empty_splits(windows: dict[str, int], spec: WindowSpec) -> None:
    need = spec.rows
    for name, n in windows.items():
        if n == 0:
            raise SeqtrainError(
                f"data.split: the {name} split has no complete window (a window needs {need} rows "
                f"within its split); lower data.seq_length or data.horizon, or give {name} a larger share"
            )


def _direction_classes(spec: LabelSpec, fitted: Fit) -> tuple[float, dict]:
    """The dead zone (fit on training moves when a quantile) and the classes of training rows."""
    dead_zone = fit_dead_zone(spec, fitted.train_moves)
    classes = labels_from_moves("direction", fitted.train_moves, dead_zone)
    values, counts = np.unique(classes.astype(str), return_counts=True)
    return dead_zone, dict(zip(values.tolist(), counts.tolist(), strict=True))


def _input_scaler(cfg, moments, features, input_names, calendar_names, time_features) -> StandardScaler:
    """The scaler of the kept input columns, from pass 2's moments over every computed column."""
    if cfg.scaler != "standard":
        return StandardScaler.identity(len(input_names))
    all_cycles = list(CALENDAR) if time_features else []
    computed = [*features, *(f"{c}_{f}" for c in all_cycles for f in ("sin", "cos")),
                *input_names[len(features) + len(calendar_names):]]
    kept = [computed.index(name) for name in input_names]
    return _scaler((moments[0], moments[1][kept], moments[2][kept]))


def _scaler(moments) -> StandardScaler:
    return StandardScaler.from_moments(*moments)


def _count_windows(row_group_series, row_group_counts, segments, spec: WindowSpec) -> dict[str, np.ndarray]:
    """Windows per row group and split, from row numbers alone (the rule of
    ``block_window_ends``, counted instead of listed)."""
    span = spec.span  # last label row = end row + span
    out = {name: np.zeros(len(row_group_series), np.int64) for name in SPLIT_NAMES}
    seen = np.zeros(len(segments), np.int64)
    for i, (series, counts) in enumerate(zip(row_group_series, row_group_counts, strict=True)):
        first_row, last_row = seen[series], seen[series] + counts - 1  # rows of this row group
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
            out[name][i] = int(np.maximum(n, 0).sum())
    return out


def _count_period_windows(row_group_series, row_group_counts, starts: np.ndarray, roles: np.ndarray,
                          spec: WindowSpec) -> dict[str, np.ndarray]:
    """``_count_windows`` for a split by periods (``period_window_counts``)."""
    out = {name: np.zeros(len(row_group_series), np.int64) for name in SPLIT_NAMES}
    seen = np.zeros(len(starts), np.int64)
    for i, (series, counts) in enumerate(zip(row_group_series, row_group_counts, strict=True)):
        first_row, last_row = seen[series], seen[series] + counts - 1
        seen[series] += counts
        for split, name in enumerate(SPLIT_NAMES):
            out[name][i] = int(period_window_counts(first_row, last_row, starts[series], roles, split,
                                                    spec.reads, spec.history, spec.span,
                                                    spec.stride_of(split), spec.embargo).sum())
    return out
