"""The data state: what a run learned from its training rows, and how any table becomes
model inputs with it.

Both readers (in memory, ``read_table``; streamed, ``plan_stream``) *fit* a ``DataState`` on the
training rows of the training table (``DataState.from_fit``, the one construction rule of both);
the run saves it as ``data_state.json``; prediction loads
it back and *applies* it, unchanged, to a new table: the same columns decoded the same way, the
same calendar columns, the same scaler, the same classes and the same window rule. Nothing is
ever refit on the table being predicted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from seqtrain.data import validate
from seqtrain.data.columns import float_column, known_future_columns, label_values, time_zone, wall_times
from seqtrain.data.labels import (
    BarrierSpec,
    BuiltLabels,
    barrier_labels,
    labels_from_moves,
    log_levels,
    moves,
)
from seqtrain.data.scaling import StandardScaler
from seqtrain.data.statics import StaticSpec, categories
from seqtrain.data.time_features import calendar_features, calendar_names
from seqtrain.data.windows import SPLIT_NAMES, WindowSpec
from seqtrain.errors import SeqtrainError
from seqtrain.files import write_json


def input_names(features: list[str], cycles: list[str], target: str, history: bool) -> list[str]:
    """The model's input columns in their one order: the feature columns, the calendar columns
    of ``cycles``, then the target (its own history) when ``history``."""
    return [*features, *calendar_names(cycles), *([target] if history else [])]


def input_matrix(features: np.ndarray, times: np.ndarray, cycles: list[str],
                 target_values: np.ndarray | None, zone: str | None = None) -> np.ndarray:
    """Unscaled inputs in their one order: feature columns, calendar columns of ``cycles`` (on
    the clock of the time column's ``zone``: ``times`` are UTC instants then), then the target's
    own history (when given)."""
    x = features
    if cycles:
        x = np.column_stack([x, calendar_features(wall_times(times, zone), cycles)[0]])
    if target_values is not None:
        x = np.column_stack([x, np.asarray(target_values, np.float32)])
    return x


@dataclass
class DataState:
    """Everything fit on training rows that turns rows into model inputs and outputs back into
    labels. ``inputs`` (derived, ``input_names``) = ``features`` (file columns), then the
    calendar columns of ``calendar_cycles``, then the target's own history when ``target_history``."""

    task: str
    target: str
    time_col: str
    group_col: str | None
    features: list[str]
    calendar_cycles: list[str]
    target_history: bool
    known_future: list[str]
    window: WindowSpec
    scaler: StandardScaler
    scaler_kind: str
    time_dtype: str
    series_names: list
    time_zone: str | None = None  # the training table's zone: times are UTC instants, calendars local
    checks_zone: bool = True  # False for a data state saved before the zone was recorded
    nan_policy: str = "error"
    sort: bool = False
    target_kind: str = "numeric"
    target_scaler: StandardScaler | None = None
    classes: list | None = None
    class_weights: list[float] | None = None
    class_counts: list[int] | None = None
    label: str = "value"  # data.label: the target itself, or a move built from it (labels.py)
    label_target_kind: str = "price"
    dead_zone: float = 0.0  # fitted on training rows when given as a quantile
    barrier: BarrierSpec | None = None  # data.label=triple_barrier: the barriers (labels.py)
    cases: dict | None = None  # data=cases: how cases are split and fed (cases.CaseSpec, seq_length)
    static: StaticSpec = field(default_factory=StaticSpec)  # data.static, model.series_embedding (statics.py)
    fit_summary: dict = field(default_factory=dict)  # what the fit saw: split bounds, rows, windows ...
    inputs: list[str] = field(init=False)  # input_names of the columns above

    def __post_init__(self) -> None:
        self.inputs = input_names([*self.features, *self.static.code_names], self.calendar_cycles,
                                  self.target, self.target_history)

    @property
    def code_columns(self) -> list[int]:
        """The positions of the static code columns among the inputs (right after the features)."""
        return list(range(len(self.features), len(self.features) + len(self.static.code_names)))

    @classmethod
    def from_fit(cls, cfg, task: str, columns: tuple, *, cycles: list[str], history: bool,
                 target_kind: str, scaler: StandardScaler, time_dtype, zone: str | None,
                 series_names: list, static: StaticSpec | None = None) -> DataState:
        """The data state of the inputs a reader fit on training rows (both readers alike):
        ``columns`` = ``validate.resolve_columns``'s (time, group, target, features), the calendar
        ``cycles`` that vary over training rows, whether the target's ``history`` is an input and
        the inputs' ``scaler`` (``static``: the code columns after the features); the window
        rule, the known-future columns and the reading settings from the ``data`` settings
        ``cfg``. The label, classes and target scaler are fit after."""
        time_col, group_col, target, features = columns
        known = known_future_columns(cfg, input_names(features, cycles, target, history), target,
                                     calendar_names(cycles))
        return cls(
            task=task, target=target, time_col=time_col, group_col=group_col, features=list(features),
            calendar_cycles=list(cycles), target_history=history, known_future=known,
            window=WindowSpec.from_config(cfg), scaler=scaler, scaler_kind=cfg.scaler,
            time_dtype=str(time_dtype), time_zone=zone, series_names=list(series_names),
            nan_policy=cfg.nan_policy, sort=bool(cfg.sort), target_kind=target_kind,
            static=static or StaticSpec(),
        )

    def summarise_fit(self, split: dict, rows: list[int], windows: dict[str, int],
                      class_counts: list | None = None, row_groups: int | None = None,
                      sample_weight: dict | None = None) -> None:
        """``fit_summary``, the same facts from both readers: the ``split`` (``splits.split_record``),
        rows and windows per split, the class counts among each split's window labels
        (classification), the row groups read (streamed), the sample weights' summary."""
        self.fit_summary = {
            "split": split,
            "rows": {name: int(n) for name, n in zip(SPLIT_NAMES, rows, strict=True)},
            "windows": {name: int(windows[name]) for name in SPLIT_NAMES},
            **({"streaming": True, "row_groups": row_groups} if row_groups is not None else {}),
            **({"class_counts_by_split": dict(zip(SPLIT_NAMES, class_counts, strict=True))}
               if class_counts is not None else {}),
            **({"sample_weight": sample_weight} if sample_weight else {}),
        }

    # -- labels ------------------------------------------------------------------------------------

    def log_moves(self, target_values: np.ndarray, bounds: np.ndarray) -> np.ndarray | None:
        """The target's log move over the horizon ending at each row, from its values of rows
        grouped by series (``bounds``; NaN where a series has too few rows before); None when
        the label is the target itself."""
        if self.label == "value":
            return None
        return moves(target_values, bounds, self.window.horizon, self.label_target_kind)

    @property
    def label_reach(self) -> int:
        """Rows before a label row that its label reads: none for the target itself, ``h`` for a
        move, ``h`` and the volatility's returns for a triple-barrier label."""
        if self.label == "value":
            return 0
        return self.window.horizon + (self.barrier.lookback if self.barrier else 0)

    @property
    def side_column(self) -> str | None:
        """The meta-labels' primary side column (``data.barrier.side``), or None."""
        return self.barrier.side if self.barrier else None

    def build_labels(self, target_values: np.ndarray, bounds: np.ndarray,
                     side: np.ndarray | None = None) -> BuiltLabels | None:
        """The labels built from the target's values of rows grouped by series (``bounds``;
        ``side``: the meta-labels' side column), or None when the label is the target itself."""
        if self.label == "value":
            return None
        if self.barrier is not None:
            return barrier_labels(log_levels(target_values, self.label_target_kind), bounds,
                                  self.window.horizon, self.barrier, side)
        log_moves = self.log_moves(target_values, bounds)
        return BuiltLabels(labels_from_moves(self.label, log_moves, self.dead_zone), log_moves)

    def realised_moves(self, log_moves: np.ndarray | None) -> np.ndarray | None:
        """With direction or triple-barrier labels, the simple return of each ``log_moves`` (what
        trading the predicted direction would have earned: to the label row, or to a
        triple-barrier label's end row, where its trade is closed); None for other labels."""
        if self.label not in ("direction", "triple_barrier"):
            return None
        return np.expm1(log_moves).astype(np.float32)

    def encode_labels(self, target_values: np.ndarray, bounds: np.ndarray | None,
                      log_moves: np.ndarray | None = None, side: np.ndarray | None = None) -> np.ndarray:
        """Labels as the model trains on them: class ids (-1 for a missing or unseen class), or
        the scaled target (NaN where missing); a move label from ``log_moves`` when given, else
        built from the target's values grouped by series (``bounds``)."""
        if self.label == "value":
            values = target_values
        elif log_moves is not None and self.barrier is None:
            values = labels_from_moves(self.label, log_moves, self.dead_zone)
        else:
            values = self.build_labels(target_values, bounds, side).values
        return self.encode_values(values)

    def encode_values(self, values: np.ndarray) -> np.ndarray:
        """Label values (as in the file, or built) as the model trains on them."""
        if self.task == "regression":
            return self.target_scaler.transform(np.asarray(values, np.float64))
        bad = pd.isna(values) if values.dtype == object else ~np.isfinite(values)
        ids = pd.Index(self.classes).get_indexer(label_values(values, self.target)).astype(np.int64)
        ids[bad] = -1
        return ids

    # -- applying the state to rows ------------------------------------------------------------

    @property
    def needed_columns(self) -> list[str]:
        """The columns a table must have to be windowed and fed to the model."""
        target = [self.target] if self.target_history else []
        return list(dict.fromkeys([self.time_col, *([self.group_col] if self.group_col else []),
                                   *self.features, *target, *self.static.categorical]))

    def raw_inputs(self, table: pa.Table, series: np.ndarray | None = None,
                   series_names: list | None = None) -> np.ndarray:
        """The feature columns of ``table``, unscaled ``(N, len(features))`` float32, then its
        static code columns (``series``: each row's code into ``series_names``)."""
        columns = [float_column(table, c) for c in self.features]
        if self.static.code_names:
            cats = {c: categories(table.column(c)) for c in self.static.categorical}
            codes = self.static.codes(cats, series, series_names)
            columns.extend(codes[:, j] for j in range(codes.shape[1]))
        if not columns:
            return np.zeros((table.num_rows, 0), np.float32)
        return np.column_stack(columns)

    def model_inputs(self, features: np.ndarray, times: np.ndarray, target_values: np.ndarray | None):
        """Scaled inputs ``(N, len(inputs))`` from the feature columns, the times (calendar
        columns) and the target's values (its own history), by the training rules."""
        x = input_matrix(features, times, self.calendar_cycles,
                         target_values if self.target_history else None, self.time_zone)
        return np.ascontiguousarray(self.scaler.transform(x))

    def check_schema(self, schema: pa.Schema, path: str) -> None:
        """One line for a table that cannot be fed as the training table was: a missing column,
        a feature that is not numeric, a time column of another kind."""
        for column in self.needed_columns:
            if column not in schema.names:
                why = ("the target's history is an input" if column == self.target else "used in training")
                raise SeqtrainError(
                    f"data.path: column {column!r} is missing from {path} ({why}); the table needs "
                    f"{validate.name_list(self.needed_columns)}"
                )
        numeric = [*self.features, *([self.target] if self.target_history else [])]
        for column in numeric:
            kind = schema.field(column).type
            if not validate.is_numeric(kind):
                raise SeqtrainError(
                    f"data.path: column {column!r} of {path} is {kind}; the model was trained on it "
                    "as a number"
                )
        kind = schema.field(self.time_col).type
        as_timestamps = pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_string(kind)
        if as_timestamps != self.time_dtype.startswith("datetime64"):
            trained = "timestamps" if self.time_dtype.startswith("datetime64") else "numbers"
            raise SeqtrainError(
                f"data.path: time column {self.time_col!r} of {path} is {kind}; the model was trained "
                f"on {trained}"
            )
        self._check_zone(schema, path)

    def _check_zone(self, schema: pa.Schema, path: str) -> None:
        """Times with a zone and times without one cannot be matched (which clock would a naive
        time be?): one line when the table and the training table differ in that. Any two
        zones match (their instants are compared, calendars read on the training zone's clock)."""
        kind = schema.field(self.time_col).type
        if not self.checks_zone or not pa.types.is_timestamp(kind):
            return
        zone = time_zone(schema, self.time_col)
        if self.time_zone is not None and zone is None:
            raise SeqtrainError(
                f"data.path: time column {self.time_col!r} of {path} has no time zone; the model was "
                f"trained on times in {self.time_zone}: give them their zone (pandas: "
                f".dt.tz_localize({self.time_zone!r}))")
        if self.time_zone is None and zone is not None:
            raise SeqtrainError(
                f"data.path: time column {self.time_col!r} of {path} is in {zone}; the model was trained "
                "on times without a zone: drop it on the clock training used (pandas: "
                ".dt.tz_convert('UTC').dt.tz_localize(None) for UTC)")

    # -- saving and loading --------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The JSON form (``data_state.json``): every field, the fit summary beside them."""
        return {
            "task": self.task, "target": self.target, "time_col": self.time_col,
            "group_col": self.group_col, "features": list(self.features),
            "calendar_cycles": list(self.calendar_cycles), "target_history": self.target_history,
            "inputs": list(self.inputs), "known_future": list(self.known_future),
            **self.window.state(), "stride": self.window.stride, "eval_stride": self.window.eval_stride,
            "embargo": self.window.embargo,
            "scaler": {"kind": self.scaler_kind, **self.scaler.to_dict()},
            "target_scaler": self.target_scaler.to_dict() if self.target_scaler else None,
            "target_kind": self.target_kind,
            "classes": self.classes, "class_weights": self.class_weights, "class_counts": self.class_counts,
            "time_dtype": self.time_dtype, "time_zone": self.time_zone, "nan_policy": self.nan_policy,
            "sort": self.sort,
            "label": {"kind": self.label, "target_kind": self.label_target_kind, "dead_zone": self.dead_zone,
                      **({"barrier": self.barrier.to_dict()} if self.barrier else {})},
            **({"cases": self.cases} if self.cases else {}),
            **({"static": self.static.to_dict()} if self.static.active else {}),
            **self.fit_summary,
            "series": len(self.series_names),
            "series_names": [str(name) for name in self.series_names],  # the series the model knows
        }

    @classmethod
    def from_dict(cls, state: dict) -> DataState:
        known = {"task", "target", "time_col", "group_col", "features", "calendar_cycles",
                 "target_history", "inputs", "known_future", "seq_length", "horizon", "output_steps",
                 "pad_short", "stride", "eval_stride", "embargo", "scaler", "target_scaler",
                 "target_kind", "classes", "class_weights", "class_counts", "time_dtype", "time_zone",
                 "nan_policy", "sort", "series", "series_names", "label", "cases", "static"}
        label = state.get("label") or {"kind": "value", "target_kind": "price", "dead_zone": 0.0}
        window = WindowSpec(state["seq_length"], state["horizon"], state["output_steps"],
                            state.get("stride", 1), state.get("eval_stride", 1), state.get("embargo", 0),
                            bool(state["pad_short"]))
        target_scaler = state.get("target_scaler")
        loaded = cls(
            task=state["task"], target=state["target"], time_col=state["time_col"],
            group_col=state["group_col"], features=list(state["features"]),
            calendar_cycles=list(state["calendar_cycles"]), target_history=bool(state["target_history"]),
            known_future=list(state["known_future"]), window=window,
            scaler=StandardScaler.from_dict(state["scaler"]), scaler_kind=state["scaler"]["kind"],
            time_dtype=state["time_dtype"], series_names=list(state["series_names"]),
            time_zone=state.get("time_zone"), checks_zone="time_zone" in state,
            nan_policy=state.get("nan_policy", "error"), sort=bool(state.get("sort", False)),
            target_kind=state.get("target_kind", "numeric"),
            target_scaler=StandardScaler.from_dict(target_scaler) if target_scaler else None,
            classes=state.get("classes"), class_weights=state.get("class_weights"),
            class_counts=state.get("class_counts"), label=label["kind"],
            label_target_kind=label["target_kind"], dead_zone=float(label["dead_zone"]),
            barrier=BarrierSpec(**label["barrier"]) if label.get("barrier") else None,
            cases=state.get("cases"), static=StaticSpec.from_dict(state.get("static")),
            fit_summary={k: v for k, v in state.items() if k not in known},
        )
        if list(state.get("inputs", loaded.inputs)) != loaded.inputs:  # derived, and saved to be read
            raise ValueError(f"inputs {state['inputs']} are not the columns {loaded.inputs}")
        return loaded

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> DataState:
        path = Path(path)
        if not path.exists():
            raise SeqtrainError(f"{path} not found: the run folder has no data state (is it a seqtrain run?)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise SeqtrainError(
                f"{path}: not a data state this version of seqtrain can read ({exc!r})") from None


class HasDataState:
    """For the in-memory (``TableData``) and streamed (``StreamData``) data alike: the data
    state's facts as attributes (its JSON form: ``state.to_dict()``)."""

    state: DataState

    task = property(lambda self: self.state.task)
    target = property(lambda self: self.state.target)
    time_col = property(lambda self: self.state.time_col)
    group_col = property(lambda self: self.state.group_col)
    features = property(lambda self: self.state.features)
    input_names = property(lambda self: self.state.inputs)
    known_future = property(lambda self: self.state.known_future)
    series_names = property(lambda self: self.state.series_names)
    classes = property(lambda self: self.state.classes)
    class_weights = property(lambda self: self.state.class_weights)
    target_scaler = property(lambda self: self.state.target_scaler)
