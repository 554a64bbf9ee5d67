"""Windows under a split by a list of periods (``data.split.periods``, eval=cpcv: test groups
with training on both sides): pure index math, as ``windows.py`` for the contiguous splits.

Each row belongs to the period of its timestamp (``splits.assign_periods``) and each period to a
split. A label never crosses its period's end, and no window reads a row its split may not read
(``READABLE``): the purge on both sides of every test period, and the embargo after it.
"""

from __future__ import annotations

import numpy as np

from seqtrain.data.windows import SERIES_BATCH_ROWS, TEST, TRAIN, VAL, WindowSpec, row_numbers, series_batches

# The splits whose rows a window of each split may read as inputs: a training window reads
# training rows only, a validation window training and validation rows, a test window the past.
READABLE = {TRAIN: (TRAIN,), VAL: (TRAIN, VAL), TEST: (TRAIN, VAL, TEST)}


def period_counts(series: np.ndarray, period: np.ndarray, n_series: int, n_periods: int) -> np.ndarray:
    """Rows per series and period ``(n_series, n_periods)``."""
    counts = np.zeros((n_series, n_periods), np.int64)
    np.add.at(counts, (series, period), 1)
    return counts


def period_starts(counts: np.ndarray) -> np.ndarray:
    """Per series, the rows before each period, and the series' length last ``(n_series, P+1)``:
    within a series the periods follow each other in time, so period i holds its row numbers
    ``starts[:, i] .. starts[:, i+1] - 1``."""
    return np.concatenate([np.zeros((len(counts), 1), np.int64), np.cumsum(counts, axis=1)], axis=1)


def readable_floor_rows(starts: np.ndarray, roles: np.ndarray, split: int) -> np.ndarray:
    """Per series and period ``(n_series, P)``, the row number right after the series' last row
    before that period that a window of ``split`` may not read (``READABLE``); 0 where there is
    none."""
    counts = np.diff(starts, axis=1)
    blocking = ~np.isin(roles, READABLE[split])[None, :] & (counts > 0)
    periods = np.arange(len(roles))
    last = np.maximum.accumulate(np.where(blocking, periods, -1), axis=1)
    before = np.concatenate([np.full((len(starts), 1), -1), last[:, :-1]], axis=1)  # periods < p
    return np.where(before >= 0, np.take_along_axis(starts, before + 1, axis=1), 0)


def period_label_ranges(starts: np.ndarray, roles: np.ndarray, split: int, seq_length: int, history: int,
                        span: int, embargo: int) -> tuple[np.ndarray, np.ndarray]:
    """For each series and period ``(n_series, P)``, the row numbers ``lo .. hi`` that may be the
    last label row of a window of ``split`` (none where ``hi < lo``).

    A window belongs to the period of its end row and is kept when
    - that period is of ``split``, and its label rows lie in the same period (purge: no label
      of one period reaches into the next, whatever its split),
    - its inputs read only rows it may read (``READABLE``): a training window after a test or
      validation row starts reading ``embargo`` rows after that row, and so does a validation
      window after a test row (purge on the other side, and the embargo); ``seq_length`` is
      the rows a window reads up to its end (``WindowSpec.reads``: its inputs, or its label's
      volatility when longer); its ``history`` rows exist (1 when short histories are
      left-padded),
    - for validation/test, its end is not within the first ``embargo`` rows of its period.
    With periods train, val, test in this order this is the rule of ``block_window_ends``.
    """
    first, after = starts[:, :-1], starts[:, 1:]
    floor = readable_floor_rows(starts, roles, split)
    lo = np.maximum(first, history - 1)
    lo = np.where(floor > 0, np.maximum(lo, floor + embargo + seq_length - 1), lo)
    if split != TRAIN:
        lo = np.maximum(lo, first + embargo)
    lo = lo + span
    hi = np.where(roles == split, after - 1, lo - 1)
    return lo, hi


def period_window_ends(bounds: np.ndarray, row_number: np.ndarray, row_period: np.ndarray,
                       starts: np.ndarray, roles: np.ndarray, split: int, seq_length: int, history: int,
                       horizon: int, output_steps: int = 1, stride: int = 1, embargo: int = 0) -> np.ndarray:
    """End rows (block indices) of the windows of ``split`` inside a block of rows, split by
    periods (``period_label_ranges``); the arguments as for ``block_window_ends``, with each
    row's period and ``starts`` (``period_starts``) of the block's series. With ``stride`` k > 1,
    the last label row is a multiple of k rows before its period's last row."""
    lengths = np.diff(bounds)
    series_of_row = np.repeat(np.arange(len(lengths)), lengths)
    end_of_row = np.repeat(bounds[1:], lengths)  # exclusive
    start_of_row = np.repeat(bounds[:-1], lengths)
    span = horizon + output_steps - 1
    t = np.arange(int(bounds[-1]), dtype=np.int64)
    ok = (t + span < end_of_row) & (t - history + 1 >= start_of_row)
    ok &= period_last_label_ok(row_number + span, row_period, series_of_row, starts, roles, split,
                               seq_length, history, span, stride, embargo)
    return t[ok]


def table_period_window_ends(bounds: np.ndarray, row_period: np.ndarray, roles: np.ndarray, split: int,
                             spec: WindowSpec) -> np.ndarray:
    """Global end rows of every window of ``split`` in a whole table split by periods (each
    row's period ``row_period``, each period's split ``roles``), a few whole series at a time
    as in ``window_ends``."""
    series = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    starts = period_starts(period_counts(series, row_period, len(bounds) - 1, len(roles)))
    parts = [np.zeros(0, np.int64)]
    for first, last in series_batches(bounds, SERIES_BATCH_ROWS):
        local = bounds[first:last + 1] - bounds[first]
        rows = slice(int(bounds[first]), int(bounds[last]))
        parts.append(bounds[first] + period_window_ends(
            local, row_numbers(local), row_period[rows], starts[first:last], roles, split, spec.reads,
            spec.history, spec.horizon, spec.output_steps, spec.stride_of(split), spec.embargo))
    return np.concatenate(parts)


def period_last_label_ok(last_label: np.ndarray, row_period: np.ndarray, series: np.ndarray,
                         starts: np.ndarray, roles: np.ndarray, split: int, seq_length: int, history: int,
                         span: int, stride: int = 1, embargo: int = 0) -> np.ndarray:
    """Whether row number ``last_label`` of ``series`` is the last label row of a window of
    ``split`` whose end row lies in period ``row_period``: ``period_label_ranges`` per row
    (the streamed label counts call it with each row's own period; a label row shares its
    window's period)."""
    lo, hi = period_label_ranges(starts, roles, split, seq_length, history, span, embargo)
    low, high = lo[series, row_period], hi[series, row_period]
    ok = (last_label >= low) & (last_label <= high)
    if stride > 1:
        ok &= (starts[series, row_period + 1] - 1 - last_label) % stride == 0
    return ok


def period_window_counts(first_row: np.ndarray, last_row: np.ndarray, starts: np.ndarray,
                         roles: np.ndarray, split: int, seq_length: int, history: int, span: int,
                         stride: int = 1, embargo: int = 0) -> np.ndarray:
    """Windows of ``split`` per series whose last label row is among row numbers ``first_row ..
    last_row`` of that series (``starts``: those series' ``period_starts``), counted without
    listing them: the rule of ``period_window_ends``."""
    lo, hi = period_label_ranges(starts, roles, split, seq_length, history, span, embargo)
    anchor = starts[:, 1:] - 1
    low, high = np.maximum(lo, first_row[:, None]), np.minimum(hi, last_row[:, None])
    n = (anchor - low) // stride - (anchor - high + stride - 1) // stride + 1
    return np.where(high >= low, n, 0).sum(axis=1)
