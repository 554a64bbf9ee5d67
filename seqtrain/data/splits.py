"""Which split each row is in, and where walk-forward folds and CPCV groups cut the time axis.

A split is chronological: by ``data.split`` fractions of the distinct timestamps of all series
together (one calendar boundary for every series), by given ``val_start``/``test_start`` times,
per series by shares of its own rows (``data.split.by=series``), or by a list of periods
(``data.split.periods``, what eval=cpcv writes). The windows each split keeps are cut in
``windows.py`` (and ``periods.py`` for a split by periods).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqtrain.data import validate
from seqtrain.data.columns import time_text
from seqtrain.data.windows import SPLIT_NAMES, TEST, TRAIN, VAL, row_numbers, series_bounds
from seqtrain.errors import SeqtrainError, first_line


def split_by_series(cfg) -> bool:
    """``data.split.by``: one global time axis (``time``), or each series by its own shares."""
    by = cfg.split.get("by", "time")
    if by not in ("time", "series"):
        raise SeqtrainError(f"data.split.by: {by!r}; choose time or series")
    if by == "series" and (cfg.split.val_start is not None or cfg.split.test_start is not None):
        raise SeqtrainError("data.split.by=series splits each series by shares of its rows; "
                            "drop data.split.val_start/test_start, or use data.split.by=time")
    return by == "series"


def split_boundaries(split, times: np.ndarray, time_col: str, zone: str | None = None):
    """``(val_start, test_start)``: ``data.split.val_start``/``test_start`` as values of the time
    column, checked, or else where the ``val``/``test`` fractions cut the distinct timestamps."""
    if split.val_start is not None and split.test_start is not None:
        val_start = as_time(split.val_start, times, "data.split.val_start", zone)
        test_start = as_time(split.test_start, times, "data.split.test_start", zone)
        if not times.min() < val_start < test_start <= times.max():
            raise SeqtrainError(
                f"data.split: need {time_col} min < val_start < test_start <= max, got "
                f"{time_text(times.min(), zone)} < {time_text(val_start, zone)} < "
                f"{time_text(test_start, zone)} <= {time_text(times.max(), zone)}"
            )
        return val_start, test_start
    if (split.val_start is None) != (split.test_start is None):
        raise SeqtrainError("data.split: set both val_start and test_start, or neither")
    bounds = fraction_boundaries(times, split.val, split.test)
    if bounds is None:
        raise SeqtrainError(
            f"data.split: {len(np.unique(times))} distinct timestamps are too few to split "
            f"val={split.val}, test={split.test}"
        )
    return bounds


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


def series_cuts(lengths: np.ndarray, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Per series, the row numbers where its validation and test periods begin, when each series
    is split by its own shares of rows: ``(n_series, 2)``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n_test = np.round(lengths * test_fraction).astype(np.int64)
    n_val = np.round(lengths * val_fraction).astype(np.int64)
    return np.stack([lengths - n_test - n_val, lengths - n_test], axis=1)


def assign_splits_by_row(row_number: np.ndarray, series: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Split id per row from its position in its own series (see ``series_cuts``)."""
    return ((row_number >= cuts[series, 0]).astype(np.int8)
            + (row_number >= cuts[series, 1]).astype(np.int8))


def as_time(value, times: np.ndarray, key: str, zone: str | None = None):
    """``value`` (a config setting) as a value of the time column ``times`` (UTC instants when
    the column has a ``zone``). A date or time without an offset is read in the table's zone, as
    its rows are written (``2023-01-01`` is midnight in New York for a New York table); one with
    an offset (``2023-01-01T00:00-05:00``, ``...Z``) is that instant. A table without a zone
    takes times without an offset only."""
    try:
        if not np.issubdtype(times.dtype, np.datetime64):
            return times.dtype.type(value)
        stamp = pd.Timestamp(str(value))
        if stamp.tz is None and zone is not None:
            stamp = stamp.tz_localize(zone)
    except (ValueError, TypeError) as exc:
        raise SeqtrainError(f"{key}: cannot read {value!r} as a value of the time column"
                            + (f" in {zone} ({first_line(exc)})" if zone else "")) from None
    if stamp.tz is not None and zone is None:
        raise SeqtrainError(f"{key}: {value!r} has a time zone but the time column has none; "
                            "give it without an offset, as the table's times are written")
    if stamp.tz is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp, "ns")


def in_period(split, times: np.ndarray, zone: str | None = None) -> np.ndarray | None:
    """Which rows lie in ``[data.split.train_start, data.split.test_end)`` (a walk-forward
    fold's period); None when neither is set."""
    start, end = split.get("train_start"), split.get("test_end")
    if start is None and end is None:
        return None
    keep = np.ones(len(times), bool)
    if start is not None:
        keep &= times >= as_time(start, times, "data.split.train_start", zone)
    if end is not None:
        keep &= times < as_time(end, times, "data.split.test_end", zone)
    return keep


def split_rows(cfg, times: np.ndarray, series: np.ndarray, time_col: str, zone: str | None = None):
    """Split id per row (chronological, on one time axis or per series) and the boundaries
    (UTC instants for a column with a ``zone``, where dates without an offset are read)."""
    if split_by_series(cfg):
        bounds = series_bounds(series)
        rule = SplitRule(cuts=series_cuts(np.diff(bounds), cfg.split.val, cfg.split.test))
        return rule.of_rows(times, series, row_numbers(bounds))[0], "per series", "per series"
    val_start, test_start = split_boundaries(cfg.split, times, time_col, zone)
    return SplitRule(None, val_start, test_start).of_rows(times, series, None)[0], val_start, test_start


def split_record(by: str, val_start, test_start, periods: tuple | None, zone: str | None) -> dict:
    """What data_state.json records of the split (both readers alike): ``by``, its boundaries
    (ISO text in the table's ``zone``), or with ``periods`` (``split_periods``) each period's
    first time and split."""
    if periods is not None:
        return period_record(*periods, zone)
    return {"by": by, "val_start": time_text(val_start, zone), "test_start": time_text(test_start, zone)}


# -- a split by a list of periods (eval=cpcv) ---------------------------------------------------


def split_periods(split, times: np.ndarray, zone: str | None = None):
    """``data.split.periods`` as ``(starts, splits)``: each period's first timestamp as a value
    of the time column (increasing), and its split id; None when not set."""
    if split.get("periods") is None:
        return None
    starts = [as_time(p[0], times, f"data.split.periods[{i}]", zone) for i, p in enumerate(split.periods)]
    starts = np.asarray(starts, dtype=times.dtype)
    if (starts[1:] <= starts[:-1]).any():
        raise SeqtrainError("data.split.periods: the first timestamps must increase; "
                            "list the periods in time order")
    splits = np.asarray([validate.PERIOD_SPLITS.index(str(p[1])) for p in split.periods], np.int8)
    return starts, splits


def assign_periods(times: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Period index per row from its timestamp: period i runs from ``starts[i]`` up to the next
    start (rows before the first start belong to the first period)."""
    cuts = np.asarray(starts[1:], dtype=times.dtype)
    return np.searchsorted(cuts, times, side="right").astype(np.int64)


def period_record(starts: np.ndarray, splits: np.ndarray, zone: str | None) -> dict:
    """What data_state.json records of a split by periods."""
    return {"by": "time", "periods": [[time_text(s, zone), SPLIT_NAMES[int(i)]]
                                      for s, i in zip(starts, splits, strict=True)]}


# -- walk-forward folds and CPCV groups on the distinct timestamps ------------------------------


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold as positions on the sorted distinct timestamps: training from
    ``train_start`` (0: the beginning), validation from ``val_start``, test from ``test_start``
    up to ``test_end`` (exclusive; None: the end of the data)."""

    train_start: int
    val_start: int
    test_start: int
    test_end: int | None


def walk_forward_folds(n_times: int, folds: int, test_size: float, val_size: float,
                       scheme: str = "expanding", train_size: float | None = None) -> list[Fold]:
    """``folds`` consecutive test blocks of ``test_size`` of the ``n_times`` distinct timestamps
    each, ending with the data; before each, a validation block of ``val_size``; before that,
    training from the start (``expanding``) or the last ``train_size`` (``sliding``). Returns an
    empty list when the timestamps are too few for that."""
    n_test, n_val = round(n_times * test_size), round(n_times * val_size)
    first_test = n_times - folds * n_test
    if n_test < 1 or n_val < 1:
        return []
    out = []
    for i in range(folds):
        test_start = first_test + i * n_test
        val_start = test_start - n_val
        train_start = 0 if scheme == "expanding" else val_start - round(n_times * (train_size or 0))
        if val_start < 1 or train_start < 0 or train_start >= val_start:
            return []
        out.append(Fold(train_start, val_start, test_start, test_start + n_test if i < folds - 1 else None))
    return out


def cpcv_group_edges(n_times: int, groups: int) -> np.ndarray:
    """Positions on the sorted distinct timestamps where each of ``groups`` chronological groups
    of (nearly) equal size starts, and ``n_times`` last."""
    return np.round(np.linspace(0, n_times, groups + 1)).astype(np.int64)


def cpcv_splits(groups: int, test_groups: int) -> list[tuple[int, ...]]:
    """Every choice of ``test_groups`` of the ``groups`` as test groups, in lexicographic order."""
    from itertools import combinations

    return list(combinations(range(groups), test_groups))


def cpcv_paths(groups: int, test_groups: int) -> np.ndarray:
    """The backtest paths of combinatorial purged cross-validation (López de Prado, AFML 12.4):
    ``(phi, groups)``, the split whose test predictions path j takes for group g. Each group is
    tested in C(N-1, k-1) splits; path j takes every group's j-th test occurrence, so that
    phi = k/N * C(N, k) paths each cover every group once."""
    splits = cpcv_splits(groups, test_groups)
    occurrences = [[s for s, chosen in enumerate(splits) if g in chosen] for g in range(groups)]
    return np.array(occurrences, dtype=np.int64).T


def cpcv_periods(edges: np.ndarray, test: tuple[int, ...], val_share: float) -> list[tuple[int, int]] | None:
    """The periods of one split as ``(first position, split id)`` on the distinct timestamps:
    consecutive training groups as one period, each test group a period of its own (so its
    windows are the same in every split that tests it), and validation the last ``val_share``
    of the last training group (it ends where a test group or the data begins, so no training
    window comes after it). None when that validation or the training before it is empty."""
    groups = len(edges) - 1
    last_train = max(g for g in range(groups) if g not in test)
    val_start = int(edges[last_train + 1] - round(val_share * (edges[last_train + 1] - edges[last_train])))
    if not edges[last_train] < val_start < edges[last_train + 1]:
        return None
    periods: list[tuple[int, int]] = []
    for g in range(groups):
        role = TEST if g in test else TRAIN
        if role == TEST or not periods or periods[-1][1] != TRAIN:
            periods.append((int(edges[g]), role))
    return sorted([*periods, (val_start, VAL)])


@dataclass(frozen=True)
class SplitRule:
    """How a row finds its split: by ``data.split.periods`` (``(first timestamps, split of each
    period)``), by its row number in its series (``cuts``: per series, the first validation
    and test row numbers) or by its time (``val_start``, ``test_start``)."""

    cuts: np.ndarray | None = None
    val_start: object = None
    test_start: object = None
    periods: tuple | None = None

    def of_rows(self, times: np.ndarray, series: np.ndarray,
                row_number: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Split id per row, and (split by periods) each row's period, else None; ``row_number``
        is read only for a split by series."""
        if self.periods is not None:
            row_period = assign_periods(times, self.periods[0])
            return self.periods[1][row_period], row_period
        if self.cuts is None:
            return assign_splits(times, self.val_start, self.test_start), None
        return assign_splits_by_row(row_number, series, self.cuts), None
