"""Whole sequences as cases (``data=cases``): each case (a gesture, an utterance, a machine's
cycle) is one multichannel sequence with one label, given as a long table of one row per (case,
step). A case is fed as one window ending at its last row, left-padded and masked like any short
window, so every model, the loaders, the readout and the report serve cases unchanged.

Look-ahead here is between cases, not within one: the split is by case (the table's own split
column, else a seeded split stratified by class), validation is carved from training cases only
(never from the test cases), and every statistic (channel scaler, classes, the length cases are
fed at) is fit on training cases only and applied unchanged to every other case, in training and
in prediction alike (``case_rows`` and ``shape_cases`` serve both).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from omegaconf import OmegaConf

from seqtrain.data import source, validate
from seqtrain.data.columns import class_balance, float_column, read_target, time_values
from seqtrain.data.memory import TableData, fit_target
from seqtrain.data.reader_rules import TargetCheck, apply_nan_policy, table_series_codes
from seqtrain.data.scaling import StandardScaler
from seqtrain.data.state import DataState
from seqtrain.data.windows import SPLIT_NAMES, TEST, TRAIN, VAL, series_bounds
from seqtrain.errors import SeqtrainError

log = logging.getLogger(__name__)

LENGTH_RULES = ("pad", "truncate", "resample")
SPLIT_VALUES = {"train": TRAIN, "val": VAL, "test": TEST}


@dataclass(frozen=True)
class CaseSpec:
    """How cases are split and fed, read once from the ``data`` settings: ``length`` (pad,
    truncate, resample), the split column (the table's own train/test), the validation share
    of training cases, the test share of all cases (without a split column) and the split's seed."""

    length: str = "pad"
    split_column: str | None = None
    val: float = 0.2
    test: float = 0.3
    seed: int = 0
    epoch_cases: int | None = None

    @classmethod
    def from_config(cls, data) -> CaseSpec:
        split = data.get("split") or {}
        spec = cls(str(data.get("length", "pad")), split.get("column"), split.get("val", 0.2),
                   split.get("test", 0.3), split.get("seed", 0), data.get("epoch_cases"))
        epoch = spec.epoch_cases
        if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1):
            raise SeqtrainError(f"data.epoch_cases: an integer >= 1, or null (each case once an epoch), "
                                f"got {epoch!r}")
        if spec.length not in LENGTH_RULES:
            raise SeqtrainError(f"data.length: {spec.length!r}; choose pad, truncate or resample")
        for key, share in (("val", spec.val), ("test", spec.test)):
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
                raise SeqtrainError(f"data.split.{key}: must be a share in (0, 1), got {share!r}")
        if isinstance(spec.seed, bool) or not isinstance(spec.seed, int):
            raise SeqtrainError(f"data.split.seed: an integer, got {spec.seed!r}")
        return spec

    def to_dict(self) -> dict:
        return {"length": self.length, "split_column": self.split_column, "val": self.val,
                "test": self.test, "seed": self.seed, "epoch_cases": self.epoch_cases}

    def repeats(self, n_train: int) -> int:
        """How many times an epoch goes through the training cases: ``epoch_cases`` of them, so
        that an epoch (early stopping's patience, the schedule) means as many steps on a table
        of 200 cases as on one of 20,000."""
        return 1 if self.epoch_cases is None else max(1, round(self.epoch_cases / max(n_train, 1)))


def check_case_settings(data, task: str, scheme: str) -> None:
    """What ``data=cases`` can be asked, before any data is read: one line for a window key that
    has no meaning for a whole case, or a setting cases do not support."""
    CaseSpec.from_config(data)
    if task != "classification":
        raise SeqtrainError("task: data=cases classifies whole cases; set task=classification")
    if scheme != "single":
        raise SeqtrainError(f"eval: data=cases splits by case, not by time; eval={scheme} cuts the time "
                            "axis: use eval=default")
    length = data.get("seq_length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
        raise SeqtrainError(f"data.seq_length: an integer >= 1, or null (fit on the training cases), "
                            f"got {length!r}")
    fixed = {"horizon": 0, "output_steps": 1, "stride": 1, "eval_stride": 1, "embargo": 0, "label": "value",
             "sample_weight": "none", "time_features": False, "target_as_input": False}
    for key, value in fixed.items():
        if data.get(key, value) != value:
            raise SeqtrainError(f"data.{key}: a case is labelled as a whole (data=cases keeps "
                                f"data.{key}={value}); remove the override")
    if data.get("known_future"):
        raise SeqtrainError("data.known_future: a case has no rows after its end; remove it")
    if str(data.get("streaming", "auto")).lower() == "true":
        raise SeqtrainError("data.streaming: data=cases reads the table in memory; set data.streaming=auto")
    if data.get("split", {}).get("periods") is not None:
        raise SeqtrainError("data.split.periods: data=cases splits by case; remove it")


@dataclass
class CaseRows:
    """The rows of a case table, grouped by case in step order: channels unscaled."""

    x: np.ndarray  # (N, F) float32 channels
    values: np.ndarray | None  # the label column's value per row (None: the table lacks it)
    times: np.ndarray  # the step column
    series: np.ndarray  # case code per row (the position in ``names``)
    names: list  # case ids, sorted
    file_rows: np.ndarray

    @property
    def bounds(self) -> np.ndarray:
        return series_bounds(self.series)

    def take(self, index: np.ndarray) -> None:
        for name in ("x", "values", "times", "series", "file_rows"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name)[index])


def case_rows(table: pa.Table, columns: tuple, task: str, nan_policy: str, target_kind: str | None = None,
              ) -> CaseRows:
    """A case table's rows (``columns``: step, case, label and channel columns), sorted by step
    within each case (the step column orders a case; a repeated step is refused), the NaN policy
    applied within each case; the label where the table holds it."""
    time_col, case_col, target, features = columns
    codes, names = table_series_codes(table, case_col)
    times = time_values(table.column(time_col), time_col)
    values = None
    if target in table.column_names:
        kind, values = read_target(table.column(target), target, task)
        if target_kind is not None and kind != target_kind:
            raise SeqtrainError(f"data.target: column {target!r} holds {kind} values; the model was "
                                f"trained on {target_kind} classes")
    order = np.lexsort((times, codes))
    x = (np.column_stack([float_column(table, c) for c in features]) if features
         else np.zeros((table.num_rows, 0), np.float32))
    rows = CaseRows(x[order], None if values is None else values[order], times[order], codes[order],
                    names, order)
    validate.check_time_order(rows.times, rows.series, names, rows.file_rows, time_col)
    check = None
    if values is not None:
        kind = "categorical" if values.dtype == object else "numeric"
        check = TargetCheck(target, rows.values, kind, fix="give every row of a case its label")
    keep = apply_nan_policy(nan_policy, rows.x, features, rows.file_rows, rows.series,
                            check if nan_policy == "error" else None)
    if keep is not None:
        log.warning("data.nan_policy=%s: dropped %d row(s) with NaN/inf", nan_policy, int((~keep).sum()))
        before = np.unique(rows.series)
        rows.take(keep)
        if len(rows.series) == 0:
            raise SeqtrainError(f"data.nan_policy={nan_policy} left no rows")
        lost = np.setdiff1d(before, rows.series)
        if len(lost):  # a whole case gone: no window, no prediction row; say which
            log.warning("data.nan_policy=%s: %d case(s) have no row left and are left out (first: %r)",
                        nan_policy, len(lost), names[lost[0]])
    return rows


def case_labels(rows: CaseRows, target: str) -> np.ndarray:
    """Each case's label (its rows' one value); one line naming a case whose rows disagree or
    lack it."""
    bounds = rows.bounds
    first = rows.values[bounds[:-1]]
    per_row = np.repeat(first, np.diff(bounds))
    missing = pd.isna(rows.values)
    differs = missing | (np.asarray(per_row != rows.values, bool))
    if differs.any():
        i = int(np.flatnonzero(differs)[0])
        case = rows.names[rows.series[i]]
        what = ("has no label on a row" if missing[i]
                else f"has two labels ({per_row[i]!r} and {rows.values[i]!r})")
        raise SeqtrainError(f"data.target: case {case!r} {what} (row {rows.file_rows[i]}); a case's label "
                            f"column {target!r} holds its one class on every row")
    return first


def split_cases(labels: np.ndarray, spec: CaseSpec, given: np.ndarray | None) -> np.ndarray:
    """Each case's split: the table's own where given (a case without ``val`` cases gets its
    validation cases from training ones), else a seeded split stratified by class; validation
    is carved from training cases only, stratified and seeded. Every class keeps at least one
    training case where it has one."""
    rng = np.random.default_rng(spec.seed)
    split = np.full(len(labels), TRAIN, np.int64) if given is None else given.copy()
    if given is None:
        _carve(split, labels, TRAIN, TEST, spec.test, rng)
    if not (split == VAL).any():
        _carve(split, labels, TRAIN, VAL, spec.val, rng)
    return split


def _carve(split: np.ndarray, labels: np.ndarray, source_split: int, target_split: int, share: float,
           rng: np.random.Generator) -> None:
    """Move ``share`` of each class's ``source_split`` cases (rounded, leaving at least one) to
    ``target_split``, chosen at random."""
    codes, _ = pd.factorize(pd.Series(labels, dtype=object), sort=True)
    for code in range(codes.max() + 1 if len(codes) else 0):
        members = np.flatnonzero((split == source_split) & (codes == code))
        moved = min(int(round(share * len(members))), len(members) - 1)
        if moved > 0:
            split[rng.choice(members, moved, replace=False)] = target_split


def given_split(table: pa.Table, rows: CaseRows, column: str) -> np.ndarray:
    """Each case's split from the table's split column (train, val or test on every row of a case)."""
    if column not in table.column_names:
        raise SeqtrainError(f"data.split.column: column {column!r} not found (columns: "
                            f"{validate.name_list(table.column_names)})")
    values = table.column(column).to_pandas().astype(str).str.lower().to_numpy()[rows.file_rows]
    unknown = sorted(set(values) - set(SPLIT_VALUES))
    if unknown:
        raise SeqtrainError(f"data.split.column: {column!r} holds {unknown[0]!r}; each case is train, val "
                            "or test")
    bounds = rows.bounds
    per_row = np.repeat(values[bounds[:-1]], np.diff(bounds))
    if (per_row != values).any():
        i = int(np.flatnonzero(per_row != values)[0])
        raise SeqtrainError(f"data.split.column: case {rows.names[rows.series[i]]!r} is in two splits; "
                            "give every row of a case the same split")
    split = np.asarray([SPLIT_VALUES[v] for v in values[bounds[:-1]]], np.int64)
    if not (split == TRAIN).any() or not (split == TEST).any():
        raise SeqtrainError(f"data.split.column: {column!r} needs train and test cases")
    return split


def fit_length(lengths: np.ndarray, rule: str, seq_length: int | None) -> int:
    """The rows every case is fed as: ``seq_length`` where given, else the longest training
    case (pad, resample) or the shortest (truncate)."""
    if seq_length is not None:
        return int(seq_length)
    return int(lengths.min() if rule == "truncate" else lengths.max())


def shape_cases(rows: CaseRows, rule: str, length: int) -> tuple[CaseRows, int]:
    """Cases at the fed length: ``truncate`` keeps each case's first ``length`` rows;
    ``resample`` interpolates each case linearly onto ``length`` evenly spaced steps (its
    steps then number 0 .. length-1); ``pad`` keeps the rows (a case longer than ``length`` is
    fed its last ``length``: the window ends at its last row). And how many cases were cut."""
    bounds = rows.bounds
    lengths = np.diff(bounds)
    cut = int((lengths > length).sum()) if rule != "resample" else 0
    if rule == "pad":
        return rows, cut
    if rule == "truncate":
        keep = np.flatnonzero(np.arange(len(rows.series)) - np.repeat(bounds[:-1], lengths)
                              < np.repeat(np.minimum(lengths, length), lengths))
        rows.take(keep)
        return rows, cut
    # resample: each case's positions 0 .. n-1 mapped onto `length` evenly spaced points
    where = np.linspace(0.0, 1.0, length)[None, :] * (lengths[:, None] - 1)  # (cases, length)
    low = np.floor(where).astype(np.int64)
    high = np.minimum(low + 1, lengths[:, None] - 1)
    weight = (where - low)[..., None].reshape(-1, 1).astype(np.float64)
    low, high = (low + bounds[:-1, None]).reshape(-1), (high + bounds[:-1, None]).reshape(-1)
    x = (rows.x[low] * (1 - weight) + rows.x[high] * weight).astype(np.float32)
    series = np.repeat(np.arange(len(lengths)), length)
    values = None if rows.values is None else rows.values[low]
    steps = np.tile(np.arange(length), len(lengths))
    return CaseRows(x, values, steps, series, rows.names, rows.file_rows[low]), 0


def last_rows(rows: CaseRows) -> np.ndarray:
    """The row each case's window ends at: its last."""
    return rows.bounds[1:] - 1


def case_columns(schema: pa.Schema, cfg, path: str) -> tuple:
    """The (step, case, label, channels) columns; the split column is never a channel."""
    columns = validate.resolve_columns(schema, cfg, path)
    split_column = (cfg.get("split") or {}).get("column")
    features = columns[3]
    if split_column is not None and cfg.features is not None and split_column in features:
        raise SeqtrainError(f"data.features: {split_column!r} is the split column; remove it from the list")
    features = [f for f in features if f != split_column]
    if not features:
        raise SeqtrainError(f"data.features: no numeric channel column in {path}; list some")
    if cfg.group_col is None:
        raise SeqtrainError("data.group_col: data=cases needs the column naming each case")
    return columns[0], columns[1], columns[2], features


def read_cases(cfg, task: str, path: str) -> TableData:
    """A case table as the in-memory loaders read windows: one window per case, ending at its
    last row, split by case, statistics fit on training cases only (the module docstring)."""
    spec = CaseSpec.from_config(cfg)
    rows, columns, case_split = _split_rows(cfg, task, path, spec)
    length = fit_length(np.diff(rows.bounds)[case_split == TRAIN], spec.length, cfg.get("seq_length"))
    rows, cut = shape_cases(rows, spec.length, length)
    _say_cut(spec.length, cut, length, "")
    row_split = np.repeat(case_split, np.diff(rows.bounds))
    train_rows = row_split == TRAIN
    scaler = (StandardScaler.fit(rows.x, train_rows) if cfg.scaler == "standard"
              else StandardScaler.identity(rows.x.shape[1]))
    window = {"seq_length": length, "horizon": 0, "output_steps": 1, "stride": 1, "eval_stride": 1,
              "embargo": 0, "pad_short": True, "label": "value"}
    kind = "categorical" if rows.values.dtype == object else "numeric"
    state = DataState.from_fit(OmegaConf.merge(cfg, window), task, columns, cycles=[], history=False,
                               target_kind=kind, scaler=scaler, time_dtype=rows.times.dtype, zone=None,
                               series_names=rows.names)
    state.cases = {**spec.to_dict(), "seq_length": length,
                   "repeats": spec.repeats(int((case_split == TRAIN).sum()))}
    state.classes, encoded, _ = fit_target(task, rows.values, train_rows, columns[2])
    ends = {name: last_rows(rows)[case_split == i] for i, name in enumerate(SPLIT_NAMES)}
    by_split = [_class_counts(rows, encoded, ends[name], name, state.classes) for name in SPLIT_NAMES]
    state.class_counts, state.class_weights = class_balance(by_split[0])
    record = {"by": "case", "column": spec.split_column, "seed": spec.seed}
    state.summarise_fit(record, [int((row_split == i).sum()) for i in range(3)],
                        {name: len(e) for name, e in ends.items()}, by_split)
    return TableData(inputs=scaler.transform(rows.x), labels=encoded, times=rows.times, series=rows.series,
                     ends=ends, state=state)


def _split_rows(cfg, task: str, path: str, spec: CaseSpec) -> tuple[CaseRows, tuple, np.ndarray]:
    """The table's rows (``case_rows``), its columns, and each case's split."""
    dataset = source.open_dataset(path)
    columns = case_columns(dataset.schema, cfg, path)
    wanted = [*columns[:3], *columns[3], *([spec.split_column] if spec.split_column else [])]
    table = source.read_columns(path, list(dict.fromkeys(wanted)), dataset)
    if table.num_rows == 0:
        raise SeqtrainError(f"data.path: {path} has no rows")
    rows = case_rows(table, columns, task, cfg.nan_policy)
    given = given_split(table, rows, spec.split_column) if spec.split_column else None
    case_split = split_cases(case_labels(rows, columns[2]), spec, given)
    for i in (TEST, VAL):  # as an empty split of windows: refused, not trained on (training keeps one)
        name = SPLIT_NAMES[i]
        if not (case_split == i).any():
            counts = " / ".join(str(int((case_split == j).sum())) for j in range(3))
            raise SeqtrainError(f"data.split: no {name} case (train/val/test {counts} of {len(case_split)} "
                                "cases; every class keeps one training case); give each class more cases"
                                f"{' or mark val cases in data.split.column' if i == VAL else ''}")
    _warn_copies(rows, case_split)
    return rows, columns, case_split


def _warn_copies(rows: CaseRows, case_split: np.ndarray) -> None:
    """Warn of validation or test cases whose channels repeat a training case's exactly (a case
    copied under another id): their scores, and 1-NN's, read the training set back."""
    bounds = rows.bounds
    keys = [hashlib.blake2b(rows.x[a:b].tobytes(), digest_size=16).digest()
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    seen = {key: i for i, key in enumerate(keys) if case_split[i] == TRAIN}
    twins = [(i, seen[key]) for i, key in enumerate(keys) if case_split[i] != TRAIN and key in seen]
    if twins:
        case, twin = (rows.names[rows.series[bounds[j]]] for j in twins[0])
        log.warning("data: %d validation or test case(s) repeat a training case's channels exactly "
                    "(first: %r = training case %r); their scores read the training set back: drop the "
                    "copies", len(twins), case, twin)


def _say_cut(rule: str, cut: int, length: int, trained: str) -> None:
    if cut:
        log.info("data.length=%s: %d case(s) longer than %d rows%s are fed %s %d rows", rule, cut, length,
                 trained, "their first" if rule == "truncate" else "their last", length)


def _class_counts(rows: CaseRows, encoded: np.ndarray, ends: np.ndarray, split: str, classes: list) -> list:
    """Cases of each class among a split's; one line for a case of a class no training case has."""
    unseen = encoded[ends] < 0
    if unseen.any():
        first = ends[unseen][0]
        raise SeqtrainError(f"data.target: {split} case {rows.names[rows.series[first]]!r} is of class "
                            f"{rows.values[first]!r}, which no training case has (classes: {classes}); "
                            "give training cases of every class")
    return np.bincount(encoded[ends], minlength=len(classes)).tolist()


def predict_rows(state: DataState, table: pa.Table) -> tuple[CaseRows, np.ndarray]:
    """New cases by the training rules (nothing refit): their rows shaped to the fed length and
    scaled (``x`` scaled in place of the raw channels), and the row each case's window ends at."""
    cases = state.cases
    columns = (state.time_col, state.group_col, state.target, state.features)
    rows = case_rows(table, columns, "classification", state.nan_policy, state.target_kind)
    if rows.values is not None:
        case_labels(rows, state.target)
    rows, cut = shape_cases(rows, cases["length"], cases["seq_length"])
    _say_cut(cases["length"], cut, cases["seq_length"], " (the length the model was trained at)")
    rows.x = np.ascontiguousarray(state.scaler.transform(rows.x))
    return rows, last_rows(rows)
