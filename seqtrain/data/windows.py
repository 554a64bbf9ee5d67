"""Window index math: pure functions over arrays, no I/O and no framework.

Rows are the concatenation of all series, each series contiguous and sorted by time. A window is
identified by the global row ``t`` it ends at (inclusive). Its inputs are rows ``t-L+1 .. t`` and
its labels rows ``t+h .. t+h+k-1`` (``L`` = seq_length, ``h`` = horizon, ``k`` = output_steps).
Which split each row is in comes from ``splits.py``; the windows of a split by periods (eval=cpcv)
are cut in ``periods.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class WindowSpec:
    """How windows are cut, read once from the ``data`` settings: ``seq_length`` input rows
    ending at row t, labels at ``t+horizon .. t+horizon+output_steps-1``, every ``stride``-th
    training window (``eval_stride`` for validation and test), ``embargo`` windows dropped after
    each boundary, short histories left-padded when ``pad_short``; ``label_reads``: rows before
    a window's end that its label reads besides (a triple-barrier label's volatility)."""

    seq_length: int
    horizon: int = 1
    output_steps: int = 1
    stride: int = 1
    eval_stride: int = 1
    embargo: int = 0
    pad_short: bool = False
    label_reads: int = 0

    @classmethod
    def from_config(cls, data) -> WindowSpec:
        from seqtrain.data.labels import BarrierSpec

        reads = (BarrierSpec.from_config(data.get("barrier")).lookback
                 if data.get("label") == "triple_barrier" else 0)
        return cls(data.seq_length, data.horizon, data.output_steps, data.stride, data.eval_stride,
                   data.embargo, bool(data.pad_short), reads)

    def state(self) -> dict:
        """What data_state.json records of the windows (all a model needs to be fed)."""
        return {"seq_length": self.seq_length, "horizon": self.horizon,
                "output_steps": self.output_steps, "pad_short": self.pad_short}

    @property
    def history(self) -> int:
        """Rows of a series a window needs up to its end: all L, or 1 when left-padded."""
        return 1 if self.pad_short else self.seq_length

    @property
    def reads(self) -> int:
        """Rows up to a window's end that the window reads, its inputs' or its label's: a split by
        periods starts a window that many rows after a row it may not read (plus the embargo)."""
        return max(self.seq_length, self.label_reads + 1)

    @property
    def span(self) -> int:
        """Rows from a window's end to its last label row."""
        return self.horizon + self.output_steps - 1

    @property
    def rows(self) -> int:
        """Rows one whole window spans, inputs to last label."""
        return self.seq_length + self.span

    def stride_of(self, split: int) -> int:
        return self.stride if split == TRAIN else self.eval_stride

    def embargo_of(self, split: int) -> int:
        return 0 if split == TRAIN else self.embargo

    def ends(self, bounds: np.ndarray, row_split: np.ndarray, split: int,
             reach: np.ndarray | None = None) -> np.ndarray:
        """``window_ends`` of ``split`` under this spec."""
        return window_ends(bounds, row_split, split, self.history, self.horizon, self.output_steps,
                           self.stride_of(split), self.embargo, reach)

    def label_rows(self, row_number, row_split, series, segments, split: int,
                   touch: np.ndarray | None = None) -> np.ndarray:
        """``last_label_rows`` of ``split`` under this spec."""
        return last_label_rows(row_number, row_split, series, segments, split, self.history, self.horizon,
                               self.output_steps, self.stride_of(split), self.embargo, touch)


def series_bounds(series_codes: np.ndarray) -> np.ndarray:
    """Offsets ``[0, s1, ..., N]`` at which each series starts, for rows grouped by series."""
    n = len(series_codes)
    changes = np.flatnonzero(series_codes[1:] != series_codes[:-1]) + 1
    return np.concatenate([[0], changes, [n]]).astype(np.int64)


def row_numbers(bounds: np.ndarray) -> np.ndarray:
    """Each row's position in its own series, for rows grouped by series (``bounds``)."""
    return np.arange(int(bounds[-1])) - np.repeat(bounds[:-1], np.diff(bounds))


def chunk_row_numbers(codes: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Each row's position in its whole series, for a chunk in file order within each series;
    ``counters`` (rows seen so far per series) is advanced past the chunk."""
    order = np.argsort(codes, kind="stable")
    ranked = np.empty(len(codes), np.int64)
    sorted_codes = codes[order]
    ranked[order] = np.arange(len(codes)) - np.searchsorted(sorted_codes, sorted_codes, side="left")
    row_number = counters[codes] + ranked
    np.add.at(counters, codes, 1)
    return row_number


def training_label_rows(row_number: np.ndarray, codes: np.ndarray, training: np.ndarray, reach: int,
                        last_blocked: np.ndarray) -> np.ndarray:
    """Which training rows hold a label that reads training rows only (its row and the ``reach``
    rows before it in its series: a move's start, a triple-barrier label's volatility), for a
    chunk in file order within each series: the rows label statistics are fit on. Training rows
    after a test or validation row (a split by periods) would read it otherwise. ``last_blocked``
    (per series, the row number of its last non-training row so far, -1 for none) is advanced
    past the chunk."""
    order = np.argsort(codes, kind="stable")
    sorted_codes, number = codes[order], row_number[order]
    blocked = np.maximum(np.where(training[order], -1, number), last_blocked[sorted_codes])
    room = int(number.max()) + 2 if len(number) else 1  # each series its own band: a running max per series
    band = sorted_codes.astype(np.int64) * room
    latest = np.maximum.accumulate(blocked + 1 + band) - band - 1
    np.maximum.at(last_blocked, sorted_codes, latest)
    out = np.empty(len(codes), bool)
    out[order] = (latest < 0) | (number - reach > latest)
    return training & out


def window_reach(touch: np.ndarray, bounds: np.ndarray, horizon: int, span: int) -> np.ndarray:
    """Per row of rows grouped by series (``bounds``), rows from the window ending there to its
    label's end row: the touch row of a triple-barrier label (``touch``, stored at label rows),
    else ``span``."""
    reach = np.full(len(touch), span, np.int64)
    start = np.repeat(bounds[:-1], np.diff(bounds))
    labelled = np.flatnonzero(touch > 0)
    labelled = labelled[labelled - horizon >= start[labelled]]  # its window's end in the same series
    reach[labelled - horizon] = touch[labelled]
    return reach


def segments_from_counts(split_rows: np.ndarray) -> np.ndarray:
    """First and last row number of each split per series, ``(n_series, 3, 2)`` (-1 where a
    series has no row in a split), from the rows per series and split ``(n_series, 3)``: within a
    series the splits follow each other in time."""
    first = np.cumsum(split_rows, axis=1) - split_rows
    has = split_rows > 0
    return np.stack([np.where(has, first, -1), np.where(has, first + split_rows - 1, -1)], axis=-1)


def segment_rows(bounds: np.ndarray, row_split: np.ndarray) -> np.ndarray:
    """``segments_from_counts`` for a whole table grouped by series."""
    series_of_row = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    split_rows = np.zeros((len(bounds) - 1, 3), np.int64)
    np.add.at(split_rows, (series_of_row, row_split), 1)
    return segments_from_counts(split_rows)


def block_window_ends(
    bounds: np.ndarray,
    row_number: np.ndarray,
    row_split: np.ndarray,
    segments: np.ndarray,
    split: int,
    seq_length: int,
    horizon: int,
    output_steps: int = 1,
    stride: int = 1,
    embargo: int = 0,
    reach: np.ndarray | None = None,
) -> np.ndarray:
    """End rows (block indices) of the windows of ``split`` inside a block of rows.

    A block holds consecutive rows of one or more series (``bounds``: where each starts); a
    whole table is one block, and so is a streamed chunk with the rows carried before it.
    ``row_number`` is each row's position in its whole series and ``segments`` the
    ``(n_block_series, 3, 2)`` first/last row numbers of each split (see ``segment_rows``), so
    that embargo and stride are decided the same way for a block as for the whole table.

    A window belongs to the split of its end row. It is kept when
    - its inputs stay inside its own series (never crossing into the previous one): its
      ``seq_length`` rows exist in the series (pass the minimum history instead, e.g. 1, when
      missing rows are left-padded),
    - its label rows exist in the same series and lie in the same split as its end row
      (purge: a training window whose labels reach into validation is dropped); with
      ``reach`` (per row, rows from the window ending there to its label's end row: a
      triple-barrier label's touch row), the label's end row decides the split instead of
      the last label row,
    - for validation/test, its end is not within the first ``embargo`` rows of the split in its
      series (a gap after each boundary),
    - with ``stride`` k > 1, its last label row is a multiple of k rows before the split's last
      row in its series (the newest window is always kept).
    """
    n = int(bounds[-1])
    lengths = np.diff(bounds)
    series_of_row = np.repeat(np.arange(len(lengths)), lengths)
    start_of_row = np.repeat(bounds[:-1], lengths)
    end_of_row = np.repeat(bounds[1:], lengths)  # exclusive

    t = np.arange(n, dtype=np.int64)
    last_label = t + horizon + output_steps - 1
    ok = (t - seq_length + 1 >= start_of_row) & (last_label < end_of_row) & (row_split == split)
    label_end = last_label if reach is None else t + reach
    ok[ok] &= row_split[label_end[ok]] == split
    ends = t[ok]
    s = series_of_row[ends]
    if embargo > 0 and split != TRAIN:
        ends = ends[row_number[ends] - segments[s, split, 0] >= embargo]
        s = series_of_row[ends]
    if stride > 1:
        ends = ends[(segments[s, split, 1] - row_number[ends + horizon + output_steps - 1]) % stride == 0]
    return ends


def last_label_rows(
    row_number: np.ndarray,
    row_split: np.ndarray,
    series: np.ndarray,
    segments: np.ndarray,
    split: int,
    seq_length: int,
    horizon: int,
    output_steps: int = 1,
    stride: int = 1,
    embargo: int = 0,
    touch: np.ndarray | None = None,
) -> np.ndarray:
    """Which rows are the last label row of a window of ``split``: the rule of
    ``block_window_ends`` stated on the label row alone (``segments`` indexed by ``series``), so
    that the labels of a split's windows can be counted from a stream of rows without cutting
    the windows. ``rows - (horizon + output_steps - 1)`` are exactly the window ends. With
    ``touch`` (per label row, rows from its window's end to the label's end row; 0: the span),
    that end row must lie in the split instead of the label row."""
    span = horizon + output_steps - 1
    first, last = segments[series, split, 0], segments[series, split, 1]
    end = row_number - span  # the window's end row, as a position in its series
    if touch is None:
        ok = (row_split == split) & (end >= seq_length - 1) & (end >= first)
    else:
        reach = np.where(touch > 0, touch, span)
        ok = (end + reach <= last) & (end >= seq_length - 1) & (end >= first)
    if embargo > 0 and split != TRAIN:
        ok &= end - first >= embargo
    if stride > 1:
        ok &= (last - row_number) % stride == 0
    return ok


def forecast_ends(bounds: np.ndarray, row_number: np.ndarray, is_new: np.ndarray, history: int,
                  span: int, final: bool, need_label_rows: bool) -> np.ndarray:
    """End rows (block indices) of the windows to forecast in a block of rows (``bounds``: where
    each series starts; ``row_number``: each row's position in its whole series; ``is_new``:
    rows not seen in an earlier block), with no split and no label needed.

    A window whose last label row is in the table is forecast in the block where that row is
    new, so a stream of blocks forecasts each window once. Windows whose label rows lie beyond
    the end of their series are forecast by the ``final`` block (the rows carried after the
    last one), unless the model reads the label rows' known-future columns
    (``need_label_rows``): then there is nothing to feed it.
    """
    lengths = np.diff(bounds)
    end_of_series = np.repeat(bounds[1:], lengths)  # exclusive
    t = np.arange(int(bounds[-1]), dtype=np.int64)
    has_history = row_number >= history - 1
    labelled = t + span < end_of_series
    ok = has_history & labelled
    ok[ok] &= is_new[t[ok] + span]
    if final and not need_label_rows:
        ok |= has_history & ~labelled
    return t[ok]


SERIES_BATCH_ROWS = 1 << 18  # rows of the whole series window_ends indexes at once (a batch of series)


def window_ends(
    bounds: np.ndarray,
    row_split: np.ndarray,
    split: int,
    seq_length: int,
    horizon: int,
    output_steps: int = 1,
    stride: int = 1,
    embargo: int = 0,
    reach: np.ndarray | None = None,
) -> np.ndarray:
    """Global end rows of every window of ``split`` in a whole table (see ``block_window_ends``),
    a few whole series at a time: windows never cross series, and the index temporaries stay the
    size of a batch of series instead of several copies of the table."""
    parts = [np.zeros(0, np.int64)]
    for first, last in series_batches(bounds, SERIES_BATCH_ROWS):
        local = bounds[first:last + 1] - bounds[first]
        rows = slice(int(bounds[first]), int(bounds[last]))
        parts.append(bounds[first] + block_window_ends(
            local, row_numbers(local), row_split[rows], segment_rows(local, row_split[rows]), split,
            seq_length, horizon, output_steps, stride, embargo, None if reach is None else reach[rows]))
    return np.concatenate(parts)


def series_batches(bounds: np.ndarray, rows: int) -> list[tuple[int, int]]:
    """Consecutive series ``[first, last)`` of about ``rows`` rows each (a longer series alone)."""
    batches, first = [], 0
    for last in range(1, len(bounds)):
        if bounds[last] - bounds[first] >= rows or last == len(bounds) - 1:
            batches.append((first, last))
            first = last
    return batches


def input_rows(ends: np.ndarray, seq_length: int) -> np.ndarray:
    """``(n, L)`` row indices of each window's inputs, oldest first."""
    return ends[:, None] + np.arange(-seq_length + 1, 1)


def label_rows(ends: np.ndarray, horizon: int, output_steps: int) -> np.ndarray:
    """``(n, k)`` row indices of each window's labels."""
    return ends[:, None] + np.arange(horizon, horizon + output_steps)
