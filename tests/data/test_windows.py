"""Index math: windows stay inside their series, labels are where they must be, splits purge."""

from unittest.mock import patch

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrain.data import windows
from seqtrain.data.splits import assign_splits, fraction_boundaries
from seqtrain.data.windows import (
    TEST,
    TRAIN,
    VAL,
    block_window_ends,
    input_rows,
    label_rows,
    last_label_rows,
    row_numbers,
    segment_rows,
    series_bounds,
    window_ends,
)


@st.composite
def layouts(draw):
    """Several series of random lengths on a shared integer clock, plus window settings."""
    lengths = draw(st.lists(st.integers(1, 40), min_size=1, max_size=5))
    series = np.repeat(np.arange(len(lengths)), lengths)
    times = np.concatenate([np.arange(n) + draw(st.integers(0, 10)) for n in lengths])
    return {
        "series": series,
        "times": times,
        "seq_length": draw(st.integers(1, 12)),
        "horizon": draw(st.integers(0, 4)),
        "output_steps": draw(st.integers(1, 3)),
        "stride": draw(st.integers(1, 4)),
        "embargo": draw(st.integers(0, 3)),
        "val_start": draw(st.integers(1, 30)),
        "gap": draw(st.integers(1, 20)),
    }


def _ends(layout, split):
    bounds = series_bounds(layout["series"])
    row_split = assign_splits(layout["times"], layout["val_start"], layout["val_start"] + layout["gap"])
    ends = window_ends(bounds, row_split, split, layout["seq_length"], layout["horizon"],
                       layout["output_steps"], layout["stride"], layout["embargo"])
    return ends, row_split


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_windows_never_cross_series_and_labels_stay_in_their_split(layout):
    series = layout["series"]
    for split in (TRAIN, VAL, TEST):
        ends, row_split = _ends(layout, split)
        if len(ends) == 0:
            continue
        rows_in = input_rows(ends, layout["seq_length"])
        rows_out = label_rows(ends, layout["horizon"], layout["output_steps"])
        assert rows_in.min() >= 0 and rows_out.max() < len(series)
        # one series from the first input row to the last label row
        assert (series[rows_in] == series[ends][:, None]).all()
        assert (series[rows_out] == series[ends][:, None]).all()
        # the last input row is the end row itself: nothing after t is an input
        assert (rows_in[:, -1] == ends).all()
        assert (rows_out[:, 0] == ends + layout["horizon"]).all()
        # purge: every label row of a window lies in the window's own split
        assert (row_split[ends] == split).all()
        assert (row_split[rows_out] == split).all()


@settings(max_examples=200, deadline=None)
@given(layouts())
def test_no_training_label_reaches_the_validation_period(layout):
    ends, _ = _ends(layout, TRAIN)
    rows_out = label_rows(ends, layout["horizon"], layout["output_steps"])
    assert (layout["times"][rows_out] < layout["val_start"]).all()


@settings(max_examples=200, deadline=None)
@given(layouts())
def test_embargo_leaves_a_gap_after_each_boundary(layout):
    times, series, embargo = layout["times"], layout["series"], layout["embargo"]
    for split in (VAL, TEST):
        ends, row_split = _ends(layout, split)
        for t in ends:
            in_segment = (series == series[t]) & (row_split == split)
            first_row = np.flatnonzero(in_segment)[0]
            assert t - first_row >= embargo
            assert times[t] >= times[first_row]


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 200), seq_length=st.integers(1, 50), horizon=st.integers(0, 10),
       output_steps=st.integers(1, 5), stride=st.integers(1, 7))
def test_window_count_for_one_series(n, seq_length, horizon, output_steps, stride):
    bounds = np.array([0, n])
    ends = window_ends(bounds, np.zeros(n, np.int8), TRAIN, seq_length, horizon, output_steps, stride)
    complete = max(0, n - seq_length - horizon - output_steps + 2)
    assert len(ends) == -(-complete // stride)  # ceil
    if complete:
        assert ends[-1] == n - horizon - output_steps  # the newest window is always kept
        assert (np.diff(ends) == stride).all()


def test_stride_is_counted_per_series():
    bounds = series_bounds(np.repeat([0, 1], [10, 7]))
    ends = window_ends(bounds, np.zeros(17, np.int8), TRAIN, seq_length=3, horizon=1, stride=2)
    # series 0: ends 2..8 (7 windows) -> 8, 6, 4, 2; series 1: ends 12..15 (4) -> 15, 13
    assert ends.tolist() == [2, 4, 6, 8, 13, 15]


def test_fraction_boundaries_cut_the_shared_time_axis():
    times = np.concatenate([np.arange(100), np.arange(50, 100)])  # second series starts later
    val_start, test_start = fraction_boundaries(times, 0.2, 0.1)
    assert (val_start, test_start) == (70, 90)
    split = assign_splits(times, val_start, test_start)
    assert (split[times < 70] == TRAIN).all() and (split[times >= 90] == TEST).all()
    assert fraction_boundaries(np.arange(2), 0.2, 0.2) is None  # too few timestamps


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_the_label_row_rule_marks_exactly_the_last_label_rows_of_the_windows(layout):
    """Streaming counts class labels with ``last_label_rows``; in memory they are read at the
    window ends: the two must be the same rows."""
    bounds = series_bounds(layout["series"])
    segments = segment_rows(bounds, _ends(layout, TRAIN)[1])
    span = layout["horizon"] + layout["output_steps"] - 1
    for split in (TRAIN, VAL, TEST):
        ends, row_split = _ends(layout, split)
        rows = last_label_rows(row_numbers(bounds), row_split, layout["series"], segments, split,
                               layout["seq_length"], layout["horizon"], layout["output_steps"],
                               layout["stride"], layout["embargo"])
        np.testing.assert_array_equal(np.flatnonzero(rows) - span, ends)


@given(layouts(), st.integers(1, 60))
def test_window_ends_a_few_series_at_a_time_are_those_of_the_whole_table(layout, batch_rows):
    """window_ends indexes batches of whole series to keep its temporaries small; any batching
    gives the one-block answer (global rows, in order) for every split."""
    bounds = series_bounds(layout["series"])
    row_split = assign_splits(layout["times"], layout["val_start"], layout["val_start"] + layout["gap"])
    settings_ = (layout["seq_length"], layout["horizon"], layout["output_steps"], layout["stride"],
                 layout["embargo"])
    for split in (TRAIN, VAL, TEST):
        whole = block_window_ends(bounds, row_numbers(bounds), row_split, segment_rows(bounds, row_split),
                                  split, *settings_)
        with patch.object(windows, "SERIES_BATCH_ROWS", batch_rows):
            batched = window_ends(bounds, row_split, split, *settings_)
        assert batched.dtype == np.int64 and np.array_equal(batched, whole)
