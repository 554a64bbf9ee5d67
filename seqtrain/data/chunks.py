"""A table read in chunks: each chunk joined after the rows carried from earlier chunks, and
what is carried on, done one way for the streamed windows (``stream_windows``) and for any
table a saved data state is applied to (``TableChunks``, what ``seqtrain predict`` reads).

Rows are grouped by series, the carried rows first within each series and then the chunk's in
its order; only the chunk's rows are new. A new row is numbered in its whole series, counting
on from the chunks before it, and the last ``keep`` rows of each series are carried on: all the
history a later row's window (and its label) reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from seqtrain.data import validate
from seqtrain.data.columns import read_target, time_values
from seqtrain.data.reader_rules import SeriesCodes, TargetCheck, apply_nan_policy
from seqtrain.data.rows import time_as_number
from seqtrain.data.state import DataState
from seqtrain.data.windows import chunk_row_numbers, series_bounds
from seqtrain.errors import SeqtrainError

log = logging.getLogger("seqtrain")


class ChunkJoiner:
    """Chunks joined one after another (see the module docstring); columns are arrays by name,
    None for a column the table lacks. ``counters``: rows of each series before the first chunk
    (grown with zeros as new series appear)."""

    def __init__(self, keep: int, counters: np.ndarray | None = None):
        self.keep = keep
        self.counters = np.zeros(0, np.int64) if counters is None else counters
        self.kept: dict | None = None  # the carried rows' columns

    def join(self, new: dict[str, np.ndarray | None]) -> tuple[dict, np.ndarray]:
        """The carried rows (their columns of ``new``'s names) and the chunk's rows ``new``,
        grouped by series; and which rows are new."""
        kept = self.kept
        n_kept = 0 if kept is None else len(kept["series"])
        if kept is not None:
            new = {k: (np.concatenate([kept[k], v]) if v is not None else None) for k, v in new.items()}
        is_new = np.arange(len(new["series"])) >= n_kept
        order = np.argsort(new["series"], kind="stable")  # carried rows stay before new rows
        return {k: (v[order] if v is not None else None) for k, v in new.items()}, is_new[order]

    def number(self, block: dict, is_new: np.ndarray) -> None:
        """Fill ``block["row_number"]`` of the new rows: their positions in their whole series."""
        series = block["series"][is_new]
        if len(series) and series.max() >= len(self.counters):
            grown = np.zeros(int(series.max()) + 1 - len(self.counters), np.int64)
            self.counters = np.concatenate([self.counters, grown])
        block["row_number"][is_new] = chunk_row_numbers(series, self.counters)

    def carry(self, block: dict) -> None:
        """Keep the last ``keep`` rows of each series of ``block`` for the next chunk."""
        series = block["series"]
        after = np.searchsorted(series, series, side="right") - np.arange(len(series))
        keep = after <= self.keep
        self.kept = {k: (v[keep] if v is not None else None) for k, v in block.items()}


@dataclass
class Chunk:
    """Rows of one or more series grouped by series: those carried from earlier chunks first."""

    x: np.ndarray  # scaled inputs
    raw: np.ndarray  # unscaled feature columns, carried for the next chunk's fills
    target: np.ndarray | None  # the target's values as read (None: not in the table)
    labels: np.ndarray  # class ids or scaled targets (zeros without the target)
    times: np.ndarray  # time_as_number
    time_values: np.ndarray
    series: np.ndarray
    row_number: np.ndarray
    file_rows: np.ndarray
    is_new: np.ndarray
    bounds: np.ndarray
    has_truth: bool

    @classmethod
    def of(cls, columns: dict, is_new: np.ndarray, has_truth: bool) -> Chunk:
        return cls(**columns, is_new=is_new, bounds=series_bounds(columns["series"]), has_truth=has_truth)

    def columns(self) -> dict:
        return {k: getattr(self, k) for k in ("x", "raw", "target", "labels", "times", "time_values",
                                              "series", "row_number", "file_rows")}


class TableChunks:
    """Any table's chunks by a saved data state (nothing refit): series codes in order of
    first appearance (a series unseen in training only with ``allow_new_series``), the time
    order, the run's NaN policy, the scaled inputs and, where the table holds the target, the
    labels. ``sort``: each chunk's rows sorted by time within each series first."""

    def __init__(self, state: DataState, allow_new_series: bool, sort: bool):
        self.state, self.allow_new_series, self.sort = state, allow_new_series, sort
        self.series = SeriesCodes(state.group_col)
        self.names_by_code: list = []
        self.known = {str(n) for n in state.series_names}
        self.joiner = ChunkJoiner(max(state.window.rows - 1, state.label_reach))  # and what a label reads
        self.kept_truth: bool | None = None
        self.file_row = 0
        self.said_unknown = False

    def _say_unknown(self, raw: np.ndarray) -> None:
        """One line, the first time, for rows of a series or static level that training never
        met: they read the shared unknown vector (``statics.py``). A warning, so that ``seqtrain
        predict`` (warnings only) shows it."""
        if self.said_unknown or not self.state.static.code_names:
            return
        unknown = self.state.static.unknown(raw[:, len(self.state.features):])
        if unknown:
            self.said_unknown = True
            log.warning("rows of a series or static level never met in training (%s) read the shared "
                        "unknown vector, the mean of the known ones",
                        ", ".join(f"{k}: {n}" for k, n in unknown.items()))

    def _check_new(self, fresh: list) -> None:
        unknown = [n for n in fresh if str(n) not in self.known]
        if unknown and not self.allow_new_series:
            raise SeqtrainError(
                f"data.group_col: series {', '.join(map(repr, unknown[:5]))} never occurred in training; "
                "allow_new_series=true predicts them anyway (every model here shares its weights "
                "across series)")

    def block(self, table: pa.Table | None) -> Chunk | None:
        """The chunk after the carried rows (None: the carried rows alone, after the last chunk)."""
        if table is None:
            kept = self.joiner.kept
            if kept is None:
                return None
            return Chunk.of(kept, np.zeros(len(kept["series"]), bool), self.kept_truth)
        state = self.state
        times = time_values(table.column(state.time_col), state.time_col)
        codes = self.series.codes(table, self._check_new)
        self.names_by_code = self.series.names
        raw = state.raw_inputs(table, codes, self.names_by_code)
        self._say_unknown(raw)
        has_truth = state.target in table.column_names
        target = read_target(table.column(state.target), state.target, state.task)[1] if has_truth else None
        file_rows = self.file_row + np.arange(table.num_rows)
        self.file_row += table.num_rows
        order = np.lexsort((times, codes)) if self.sort else np.argsort(codes, kind="stable")
        new = {"raw": raw[order], "time_values": times[order], "series": codes[order],
               "file_rows": file_rows[order], "target": target[order] if has_truth else None,
               "row_number": np.full(len(order), -1, np.int64)}
        return self._join(new, has_truth)

    def _join(self, new: dict, has_truth: bool) -> Chunk | None:
        state = self.state
        if self.joiner.kept is not None and self.kept_truth != has_truth:
            raise SeqtrainError(f"data.path: column {state.target!r} is in some files and not others")
        rows, is_new = self.joiner.join(new)
        validate.check_time_order(rows["time_values"], rows["series"], self.names_by_code, rows["file_rows"],
                                  state.time_col)
        # the run's data.nan_policy on the inputs read (carried rows are already clean)
        history = TargetCheck(state.target, rows["target"]) if state.target_history else None
        keep = apply_nan_policy(state.nan_policy, rows["raw"], state.features, rows["file_rows"],
                                rows["series"], history)
        if keep is not None:
            rows = {k: (v[keep] if v is not None else None) for k, v in rows.items()}
            is_new = is_new[keep]
        if len(rows["series"]) == 0:
            return None
        state.static.check_rows(rows["raw"], state.features, rows["series"], self.names_by_code)
        self.joiner.number(rows, is_new)
        rows["x"] = state.model_inputs(rows["raw"], rows["time_values"], rows["target"])
        rows["labels"] = self._labels(rows["target"], rows["series"], rows["raw"])
        rows["times"] = time_as_number(rows["time_values"])
        return Chunk.of(rows, is_new, has_truth)

    def _labels(self, target: np.ndarray | None, series: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """The truth where the table holds the target: class ids (-1: missing or unseen) or
        scaled values (NaN: missing); a built label (a move, a triple-barrier class) reads only
        rows of the block (and a meta-label the side among the raw inputs)."""
        state = self.state
        if target is None:
            return np.zeros(len(series), np.int64 if state.task == "classification" else np.float32)
        if state.label != "value":  # no move from a level that cannot make one: no truth there
            floor = 0 if state.label_target_kind == "price" else -1
            target = np.where(np.asarray(target, np.float64) > floor, target, np.nan)
        side = raw[:, state.features.index(state.side_column)] if state.side_column else None
        return state.encode_labels(target, series_bounds(series), side=side)

    def carry(self, block: Chunk) -> None:
        """Keep the last ``seq_length + horizon + output_steps - 2`` rows of each series (and
        what a label reads): all a later window can read."""
        self.joiner.carry(block.columns())
        self.kept_truth = block.has_truth
