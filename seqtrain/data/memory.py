"""From a Parquet table to scaled arrays and window indices, with train-only statistics.

Order matters for look-ahead safety: the split is decided from timestamps first, then every
learned statistic (scaler, target scaler, class list, class weights) is fit on training rows only
and applied to all rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqtrain.data import source, validate
from seqtrain.data.columns import (
    check_classes,
    check_known_classes,
    class_balance,
    label_values,
    missing_values,
    target_history_is_input,
    time_zone,
    wall_times,
)
from seqtrain.data.labels import (
    BuiltLabels,
    LabelSpec,
    check_levels,
    check_side,
    fit_dead_zone,
    labels_from_moves,
    moves,
)
from seqtrain.data.periods import table_period_window_ends
from seqtrain.data.scaling import StandardScaler
from seqtrain.data.splits import SplitRule, in_period, split_periods, split_record, split_rows
from seqtrain.data.state import DataState, HasDataState, input_matrix
from seqtrain.data.statics import StaticSpec, read_static, static_columns, with_static_features
from seqtrain.data.table_rows import TableRows, read_rows
from seqtrain.data.time_features import cycle_ranges, varying_cycles
from seqtrain.data.weights import SampleWeightSpec, training_weights
from seqtrain.data.windows import (
    SERIES_BATCH_ROWS,
    SPLIT_NAMES,
    TRAIN,
    WindowSpec,
    row_numbers,
    series_batches,
    series_bounds,
    training_label_rows,
    window_reach,
)
from seqtrain.errors import SeqtrainError

log = logging.getLogger(__name__)

@dataclass
class TableData(HasDataState):
    """What the in-memory loaders and the report need (``read_table``): the whole table as
    arrays, rows grouped by series, sorted by time."""

    inputs: np.ndarray  # (N, F) float32, scaled
    labels: np.ndarray  # (N,) int64 class ids, or float32 scaled regression target
    times: np.ndarray  # (N,)
    series: np.ndarray  # (N,) int series code
    ends: dict[str, np.ndarray]  # split name -> global end rows of its windows
    state: DataState  # the data state: every fitted statistic, saved as data_state.json
    moves: np.ndarray | None = None  # direction labels: the realised return of each label row
    # (triple-barrier: to the label's end row)
    touch: np.ndarray | None = None  # triple-barrier labels: rows from a window's end to its label's end
    weights: np.ndarray | None = None  # data.sample_weight: loss weight of the window ending at each row


def read_table(cfg, task: str, path: str, series_embedding: bool = False) -> TableData:
    """Read, validate, split, fit statistics on training rows and index the windows: the steps
    below, in this order (the split comes first, so that every statistic sees training rows only).
    ``series_embedding``: the series id is an input (a code column, ``statics.py``)."""
    validate.check_window_settings(cfg)
    schema = source.read_schema(path)
    numeric, categorical = static_columns(cfg, schema, path)
    # time, group, target, features (the numeric static columns among them)
    columns = with_static_features(validate.resolve_columns(schema, cfg, path), numeric, categorical,
                                   cfg.features is not None)
    time_col, target = columns[0], columns[2]
    rows = read_rows(cfg, task, path, *columns)
    rows.zone = time_zone(schema, time_col)
    keep_period(cfg.split, rows)
    row_split, periods, split = split_table(cfg, rows, time_col)
    train_rows = row_split == TRAIN
    cycles = calendar_cycles(cfg, rows.times, train_rows, time_col, rows.zone)
    side = side_values(cfg, rows)  # before fit_inputs scales the feature matrix in place
    static, codes = read_static(path, rows, train_rows, numeric, categorical, series_embedding, columns[1])
    state, inputs = fit_inputs(cfg, task, rows, train_rows, columns, cycles, static, codes)
    label_rows = label_training_rows(cfg, task, rows, train_rows)
    values, built = fit_labels(cfg, state, rows, label_rows, side)
    defined = ~missing_values(values, "categorical" if values.dtype == object else "numeric")
    state.classes, labels, state.target_scaler = fit_target(task, values, label_rows & defined, target)
    rows.file_rows = rows.target_values = None  # read no further: the window index takes their room
    if task != "classification":  # the class counts read the labels' values, nothing else does
        values = None
    touch = built.touch if built is not None else None
    reach = (window_reach(touch, series_bounds(rows.series), state.window.horizon, state.window.span)
             if touch is not None else None)
    ends = cut_windows(cfg, rows, row_split, state.window, periods, reach)
    weights, weight_summary = fit_sample_weights(cfg, state.window, ends["train"], reach, rows.series)
    by_split = None
    if task == "classification":
        by_split = _window_classes(labels, values, ends, state)
        state.class_counts, state.class_weights = class_balance(by_split[0])
    state.summarise_fit(split, [(row_split == i).sum() for i in range(len(SPLIT_NAMES))],
                        {name: len(e) for name, e in ends.items()}, by_split, sample_weight=weight_summary)
    realised = state.realised_moves(built.moves) if built is not None else None
    return TableData(inputs=inputs, labels=labels, times=rows.times, series=rows.series, ends=ends,
                     state=state, moves=realised, touch=touch, weights=weights)


def keep_period(split, rows: TableRows) -> None:
    """``data.split.train_start`` / ``test_end`` (a walk-forward fold's period): rows outside
    ``[train_start, test_end)`` are left out before anything is split or fit."""
    keep = in_period(split, rows.times, rows.zone)
    if keep is None:
        return
    if not keep.any():
        raise SeqtrainError(f"data.split: no rows between train_start={split.get('train_start')} "
                            f"and test_end={split.get('test_end')}")
    rows.take(np.flatnonzero(keep))
    present, rows.series = np.unique(rows.series, return_inverse=True)  # series with rows in it
    rows.series_names = [rows.series_names[i] for i in present]


def split_table(cfg, rows: TableRows, time_col: str):
    """Split id per row, the periods (by ``data.split.periods``: each row's period and each
    period's split, else None; otherwise ``split_rows``), and what data_state.json records of
    the split (``splits.split_record``)."""
    found = split_periods(cfg.split, rows.times, rows.zone)
    if found is None:
        row_split, val_start, test_start = split_rows(cfg, rows.times, rows.series, time_col, rows.zone)
        by = cfg.split.get("by", "time")
        return row_split, None, split_record(by, val_start, test_start, None, rows.zone)
    row_split, row_period = SplitRule(periods=found).of_rows(rows.times, rows.series, None)
    return row_split, (row_period, found[1]), split_record("time", None, None, found, rows.zone)


def label_training_rows(cfg, task: str, rows: TableRows, train_rows: np.ndarray) -> np.ndarray:
    """The training rows whose labels read training rows only (``windows.training_label_rows``):
    the label statistics' rows."""
    reach = LabelSpec.from_config(cfg, task).reads
    bounds = series_bounds(rows.series)
    out = np.empty(len(rows.series), bool)
    for first, last in series_batches(bounds, SERIES_BATCH_ROWS):  # bounded index temporaries
        part, local = slice(bounds[first], bounds[last]), bounds[first:last + 1] - bounds[first]
        out[part] = training_label_rows(row_numbers(local), rows.series[part], train_rows[part], reach,
                                        np.full(len(rows.series_names), -1, np.int64))
    return out


def calendar_cycles(cfg, times: np.ndarray, train_rows: np.ndarray, time_col: str,
                    zone: str | None = None) -> list[str]:
    """``data.time_features``: the calendar cycles that vary over training rows (a statistic
    like any other), on the clock of the table's ``zone``; their sine/cosine columns follow
    the features."""
    if not cfg.time_features:
        return []
    if not np.issubdtype(times.dtype, np.datetime64):
        raise SeqtrainError(f"data.time_features: needs timestamps in {time_col!r}, which holds numbers; "
                            "set data.time_features=false")
    return varying_cycles(cycle_ranges(wall_times(times[train_rows], zone)))


def side_values(cfg, rows: TableRows) -> np.ndarray | None:
    """The meta-labels' side column (``data.barrier.side``, +1/-1 on every row), which must be
    an input: the model judges the primary model's trade knowing its side."""
    spec = LabelSpec.from_config(cfg, "classification") if cfg.get("label") == "triple_barrier" else None
    if spec is None or spec.barrier.side is None:
        return None
    column = spec.barrier.side
    if column not in rows.features:
        raise SeqtrainError(f"data.barrier.side: column {column!r} is not an input; add it to "
                            "data.features (the model judges the primary's trade knowing its side)")
    side = rows.x[:, rows.features.index(column)].astype(np.float64)
    check_side(side, column, rows.file_rows)
    return side


def fit_labels(cfg, state: DataState, rows: TableRows, train_rows: np.ndarray,
               side: np.ndarray | None = None) -> tuple[np.ndarray, BuiltLabels | None]:
    """The label of every row (``data.label``: the target, its move over the horizon with a
    dead zone fit on training rows when given as a quantile, or its triple-barrier class),
    recorded in the data state; and what it was built from (None for ``value``)."""
    spec = LabelSpec.from_config(cfg, state.task)
    state.label, state.label_target_kind = spec.kind, spec.target_kind
    state.barrier = spec.barrier
    if not spec.builds:
        return rows.target_values, None
    if rows.target_kind != "numeric":
        raise SeqtrainError(f"data.label={spec.kind}: the target {state.target!r} must hold numbers "
                            "(prices, or returns with data.target_kind=return)")
    check_levels(rows.target_values, spec.target_kind, state.target, rows.file_rows)
    bounds = series_bounds(rows.series)
    if spec.barrier is not None:
        built = state.build_labels(rows.target_values, bounds, side)
        return built.values, built
    log_moves = moves(rows.target_values, bounds, spec.horizon, spec.target_kind)
    state.dead_zone = fit_dead_zone(spec, log_moves[train_rows])
    return labels_from_moves(spec.kind, log_moves, state.dead_zone), BuiltLabels(None, log_moves)


def fit_sample_weights(cfg, window: WindowSpec, train_ends: np.ndarray, reach: np.ndarray | None,
                       series: np.ndarray):
    """``data.sample_weight=uniqueness``: the loss weight of each training window (``weights.py``,
    from the label spans of training windows only; 1 at every other row), and what to report
    (the mean average uniqueness); ``(None, None)`` without weights."""
    spec = SampleWeightSpec.from_config(cfg)
    if not spec.active:
        return None, None
    # the span is >= 1: the spec refuses horizon 0
    spans = reach[train_ends] if reach is not None else np.full(len(train_ends), window.span)
    fitted, mean = training_weights(train_ends, spans, series[train_ends], len(series), spec.decay)
    weights = np.ones(len(series), np.float32)
    weights[train_ends] = fitted
    return weights, {"kind": spec.kind, "decay": float(spec.decay), "mean_uniqueness": mean}


def fit_target(task: str, values: np.ndarray, train_rows: np.ndarray, target: str):
    """Class ids from the training rows' classes, or the target scaled by a train-fitted
    scaler: ``(classes, labels, target_scaler)``."""
    if task == "classification":
        classes, labels = _encode_classes(values, train_rows, target)
        return classes, labels, None
    target_scaler = StandardScaler.fit(values[train_rows])
    return None, target_scaler.transform(values), target_scaler


def fit_inputs(cfg, task: str, rows: TableRows, train_rows: np.ndarray, columns: tuple,
               cycles: list[str], static: StaticSpec | None = None,
               codes: np.ndarray | None = None) -> tuple[DataState, np.ndarray]:
    """The data state of the inputs (their columns: features, the static code columns,
    calendar columns, then the target's own history when it is an input; the scaler fit on
    training rows, codes left as they are) and the scaled input matrix; ``columns``: the (time,
    group, target, features) columns."""
    target = columns[2]
    history = target_history_is_input(cfg, target)
    if history and rows.target_kind != "numeric":
        log.info("target %r is not numeric: its history is not used as an input", target)
        history = False
    n_codes = 0 if codes is None else codes.shape[1]
    if history and not cycles and not n_codes and rows.matrix.shape[1] > len(rows.features):
        x = rows.matrix  # input_matrix's order (features, then the history), filled in place
        x[:, -1] = rows.target_values
    else:
        features = rows.x if not n_codes else np.column_stack([rows.x, codes])
        x = input_matrix(features, rows.times, cycles, rows.target_values if history else None, rows.zone)
    rows.matrix = None  # in the input matrix now: one copy of the features is enough
    scaler = (StandardScaler.fit(x, train_rows) if cfg.scaler == "standard"
              else StandardScaler.identity(x.shape[1]))
    scaler = scaler.leaving(list(range(len(rows.features), len(rows.features) + n_codes)))
    state = DataState.from_fit(cfg, task, columns, cycles=cycles, history=history,
                               target_kind=rows.target_kind, scaler=scaler, time_dtype=rows.times.dtype,
                               zone=rows.zone, series_names=rows.series_names, static=static)
    return state, scaler.transform(x, out=x)  # scaled in place: x is this function's own copy


def cut_windows(cfg, rows: TableRows, row_split: np.ndarray, spec: WindowSpec, periods=None,
                reach: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Split name -> global end rows of its windows (``windows.window_ends``; ``reach``: rows
    from each window's end to its label's end row, when not the span; or with ``periods``, each
    row's period and each period's split, ``windows.period_window_ends``, a label counted to its
    span's end, where every touch row lies at the latest); an empty split is an error."""
    bounds = series_bounds(rows.series)
    _warn_short_series(bounds, rows.series_names, spec)
    ends = {}
    for split, name in enumerate(SPLIT_NAMES):
        if periods is None:
            ends[name] = spec.ends(bounds, row_split, split, reach)
        else:
            ends[name] = table_period_window_ends(bounds, *periods, split, spec)
        if len(ends[name]) == 0:
            raise SeqtrainError(_empty_split_message(name, spec, row_split == split))
    return ends


def _window_classes(labels, values, ends, state: DataState) -> list[list[int]]:
    """Class counts among each split's window labels (train, val, test); refuse validation or
    test windows whose class training never saw."""
    counts, classes = [], state.classes
    for name in SPLIT_NAMES:
        rows = ends[name] + state.window.horizon
        if name != "train":
            check_known_classes(labels[rows], values[rows], name, classes, state.target, state.label)
        counts.append(np.bincount(labels[rows], minlength=len(classes)).tolist())
    return counts


def _encode_classes(values: np.ndarray, train_rows: np.ndarray, target: str):
    """Class ids from the classes seen in training rows; rows of other classes get -1."""
    values = label_values(values, target)
    classes = sorted(set(values[train_rows].tolist()))
    check_classes(classes, target)
    ids = pd.Index(classes).get_indexer(values).astype(np.int64)  # unseen classes -> -1
    return classes, ids


def _warn_short_series(bounds, series_names, spec: WindowSpec) -> None:
    need = spec.history + spec.span
    short = np.flatnonzero(np.diff(bounds) < need)
    if len(short) == len(series_names):
        longest = int(np.diff(bounds).max())
        raise SeqtrainError(
            f"data.seq_length: every series is shorter than one window (longest {longest} rows, "
            f"a window needs seq_length + horizon + output_steps - 1 = {need}); lower data.seq_length"
        )
    if len(short):
        log.warning("%d of %d series are shorter than one window (%d rows) and give no windows%s",
                    len(short), len(series_names), need,
                    "" if spec.pad_short else "; data.pad_short=true keeps them, left-padded")


def _empty_split_message(name: str, spec: WindowSpec, rows_in_split: np.ndarray) -> str:
    need = spec.rows
    return (
        f"data.split: the {name} split has no complete window ({int(rows_in_split.sum())} rows; a "
        f"window needs {need} rows of history and labels within its split); lower data.seq_length "
        f"or data.horizon, or give {name} a larger share of the data"
    )
