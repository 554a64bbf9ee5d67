"""Window index math: pure functions over arrays, no I/O and no framework.

Rows are the concatenation of all series, each series contiguous and sorted by time. A window is
identified by the global row ``t`` it ends at (inclusive). Its inputs are rows ``t-L+1 .. t`` and
its labels rows ``t+h .. t+h+k-1`` (``L`` = seq_length, ``h`` = horizon, ``k`` = output_steps).
"""

from __future__ import annotations

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")


def series_bounds(series_codes: np.ndarray) -> np.ndarray:
    """Offsets ``[0, s1, ..., N]`` at which each series starts, for rows grouped by series."""
    n = len(series_codes)
    changes = np.flatnonzero(series_codes[1:] != series_codes[:-1]) + 1
    return np.concatenate([[0], changes, [n]]).astype(np.int64)


def fraction_boundaries(times: np.ndarray, val_fraction: float, test_fraction: float):
    """First timestamps of the validation and test periods, cutting the global time axis.

    The cut is on the sorted unique timestamps of all series together, so every series shares
    the same calendar boundaries: no series' training period overlaps another's validation.
    """
    unique = np.unique(times)
    n = len(unique)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    n_train = n - n_val - n_test
    if n_train < 1 or n_val < 1 or n_test < 1:
        return None
    return unique[n_train], unique[n_train + n_val]


def assign_splits(times: np.ndarray, val_start, test_start) -> np.ndarray:
    """Split id per row from its timestamp: train before ``val_start``, test from ``test_start``."""
    cuts = np.array([val_start, test_start], dtype=times.dtype)
    return np.searchsorted(cuts, times, side="right").astype(np.int8)


def _rank_within_runs(run_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a sorted id array: each element's position within its run, and that run's length."""
    n = len(run_ids)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.flatnonzero(run_ids[1:] != run_ids[:-1]) + 1])
    lengths = np.diff(np.concatenate([starts, [n]]))
    start_of = np.repeat(starts, lengths)
    return np.arange(n) - start_of, np.repeat(lengths, lengths)


def window_ends(
    bounds: np.ndarray,
    row_split: np.ndarray,
    split: int,
    seq_length: int,
    horizon: int,
    output_steps: int = 1,
    stride: int = 1,
    embargo: int = 0,
) -> np.ndarray:
    """Global end rows of every window of ``split``, sorted.

    A window belongs to the split of its end row. It is kept when
    - its inputs stay inside its own series (never crossing into the previous one),
    - its label rows exist in the same series and lie in the same split as its end row
      (purge: a training window whose labels reach into validation is dropped),
    - for validation/test, its end is not within the first ``embargo`` rows of the split in its
      series (a gap after each boundary).
    ``stride`` keeps every stride-th window per series, anchored at the most recent one.
    """
    n = int(bounds[-1])
    lengths = np.diff(bounds)
    series_of_row = np.repeat(np.arange(len(lengths)), lengths)
    start_of_row = np.repeat(bounds[:-1], lengths)
    end_of_row = np.repeat(bounds[1:], lengths)  # exclusive

    t = np.arange(n, dtype=np.int64)
    last_label = t + horizon + output_steps - 1
    ok = (t - seq_length + 1 >= start_of_row) & (last_label < end_of_row) & (row_split == split)
    ok[ok] &= row_split[last_label[ok]] == split

    if embargo > 0 and split != TRAIN:
        segment = series_of_row.astype(np.int64) * 3 + row_split  # runs of (series, split)
        position, _ = _rank_within_runs(segment)
        ok &= position >= embargo

    ends = t[ok]
    if stride > 1 and len(ends):
        rank, count = _rank_within_runs(series_of_row[ends])
        ends = ends[(count - 1 - rank) % stride == 0]
    return ends


def input_rows(ends: np.ndarray, seq_length: int) -> np.ndarray:
    """``(n, L)`` row indices of each window's inputs, oldest first."""
    return ends[:, None] + np.arange(-seq_length + 1, 1)


def label_rows(ends: np.ndarray, horizon: int, output_steps: int) -> np.ndarray:
    """``(n, k)`` row indices of each window's labels."""
    return ends[:, None] + np.arange(horizon, horizon + output_steps)
