"""Splits by a list of periods (eval=cpcv): purged on both sides of every test period, the
embargo after it, and the backtest paths recombined from the splits."""

from math import comb

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrain.data.periods import (
    READABLE,
    period_counts,
    period_last_label_ok,
    period_starts,
    period_window_counts,
    period_window_ends,
)
from seqtrain.data.splits import (
    assign_periods,
    assign_splits,
    cpcv_group_edges,
    cpcv_paths,
    cpcv_periods,
    cpcv_splits,
)
from seqtrain.data.windows import (
    TEST,
    TRAIN,
    VAL,
    block_window_ends,
    row_numbers,
    segment_rows,
    series_bounds,
)


@st.composite
def period_layouts(draw):
    """Several series on a shared integer clock, some with a missing bar, periods of random
    splits and lengths, and window settings."""
    lengths = draw(st.lists(st.integers(1, 40), min_size=1, max_size=4))
    times = []
    for n in lengths:
        clock = np.arange(n + 1) + draw(st.integers(0, 8))
        times.append(np.delete(clock, draw(st.integers(0, n))))  # one bar missing
    cuts = sorted(set(draw(st.lists(st.integers(1, 45), min_size=1, max_size=6))))
    return {
        "series": np.repeat(np.arange(len(lengths)), lengths),
        "times": np.concatenate(times),
        "starts": np.array([0, *cuts]),
        "roles": np.array(draw(st.lists(st.sampled_from([TRAIN, VAL, TEST]), min_size=len(cuts) + 1,
                                        max_size=len(cuts) + 1)), np.int8),
        "seq_length": draw(st.integers(1, 8)),
        "horizon": draw(st.integers(0, 3)),
        "output_steps": draw(st.integers(1, 3)),
        "stride": draw(st.integers(1, 3)),
        "embargo": draw(st.integers(0, 3)),
        "pad_short": draw(st.booleans()),
    }


def _period_ends(layout, split, block=None):
    """The windows of the whole table, or of the rows ``block`` (with the table's row numbers
    and period starts, as a stream sees them)."""
    series, times = layout["series"], layout["times"]
    period = assign_periods(times, layout["starts"])
    starts = period_starts(period_counts(series, period, series.max() + 1, len(layout["starts"])))
    rows = row_numbers(series_bounds(series))
    if block is not None:
        bounds = series_bounds(series[block])
        ends = period_window_ends(bounds, rows[block], period[block], starts[series[block][bounds[:-1]]],
                                  layout["roles"], split, layout["seq_length"],
                                  1 if layout["pad_short"] else layout["seq_length"], layout["horizon"],
                                  layout["output_steps"], layout["stride"], layout["embargo"])
        return block[ends], period, starts
    bounds = series_bounds(series)
    history = 1 if layout["pad_short"] else layout["seq_length"]
    return period_window_ends(bounds, rows, period, starts, layout["roles"], split, layout["seq_length"],
                              history, layout["horizon"], layout["output_steps"], layout["stride"],
                              layout["embargo"]), period, starts


def _kept_by_the_rules(layout, split, t, period):
    """The documented rule, row by row, for a window of ``split`` ending at global row ``t``."""
    series, roles = layout["series"], layout["roles"]
    L, span = layout["seq_length"], layout["horizon"] + layout["output_steps"] - 1
    first = np.searchsorted(series, series[t], side="left")
    last = np.searchsorted(series, series[t], side="right") - 1
    if roles[period[t]] != split or t + span > last:
        return False
    if not (period[t:t + span + 1] == period[t]).all():  # labels in the end row's period
        return False
    if not layout["pad_short"] and t - L + 1 < first:
        return False
    unreadable = [r for r in range(first, t) if roles[period[r]] not in READABLE[split]]
    if unreadable and t - L + 1 < unreadable[-1] + 1 + layout["embargo"]:  # purge, embargo after
        return False
    same = [r for r in range(first, t) if period[r] == period[t]]
    if split != TRAIN and len(same) < layout["embargo"]:
        return False
    period_rows = [r for r in range(first, last + 1) if period[r] == period[t]]
    return (period_rows[-1] - (t + span)) % layout["stride"] == 0


@settings(max_examples=80, deadline=None)
@given(period_layouts())
def test_period_windows_are_exactly_those_the_rules_keep(layout):
    for split in (TRAIN, VAL, TEST):
        ends, period, _ = _period_ends(layout, split)
        expected = [t for t in range(len(layout["series"])) if _kept_by_the_rules(layout, split, t, period)]
        assert ends.tolist() == expected


@settings(max_examples=50, deadline=None)
@given(period_layouts())
def test_no_window_reads_a_row_its_split_may_not_read(layout):
    """No training window's label or input rows touch a test or validation row, none within
    the embargo after one; no validation window's rows touch a test row."""
    series, roles = layout["series"], layout["roles"]
    L, h, k = layout["seq_length"], layout["horizon"], layout["output_steps"]
    for split in (TRAIN, VAL):
        ends, period, _ = _period_ends(layout, split)
        for t in ends.tolist():
            reach = np.arange(t - L + 1 - layout["embargo"], t + h + k)
            reach = reach[(reach >= 0) & (reach < len(series))]
            reach = reach[series[reach] == series[t]]
            assert np.isin(roles[period[reach]], READABLE[split]).all()
            assert (roles[period[t + h:t + h + k]] == split).all()


@settings(max_examples=50, deadline=None)
@given(period_layouts())
def test_train_val_test_periods_give_the_two_cut_windows(layout):
    """Periods train, validation, test in this order are the usual chronological split."""
    val_start, test_start = int(layout["starts"][-1]), int(layout["starts"][-1]) + 7
    layout = {**layout, "starts": np.array([0, val_start, test_start]), "roles": np.array([TRAIN, VAL, TEST])}
    bounds = series_bounds(layout["series"])
    row_split = assign_splits(layout["times"], val_start, test_start)
    for split in (TRAIN, VAL, TEST):
        history = 1 if layout["pad_short"] else layout["seq_length"]
        expected = block_window_ends(bounds, row_numbers(bounds), row_split, segment_rows(bounds, row_split),
                                     split, history, layout["horizon"], layout["output_steps"],
                                     layout["stride"], layout["embargo"])
        assert _period_ends(layout, split)[0].tolist() == expected.tolist()


@settings(max_examples=40, deadline=None)
@given(period_layouts(), st.integers(1, 6))
def test_counted_and_streamed_windows_are_the_listed_ones(layout, chunk):
    """Windows counted per block of rows, marked by their last label row, and cut block by
    block with the rows carried before each block: the whole table's windows, once each."""
    series = layout["series"]
    span = layout["horizon"] + layout["output_steps"] - 1
    need = layout["seq_length"] + span
    history = 1 if layout["pad_short"] else layout["seq_length"]
    rows = row_numbers(series_bounds(series))
    for split in (TRAIN, VAL, TEST):
        ends, period, starts = _period_ends(layout, split)
        marks = period_last_label_ok(rows, period, series, starts, layout["roles"], split,
                                     layout["seq_length"], history, span, layout["stride"], layout["embargo"])
        assert np.flatnonzero(marks).tolist() == (ends + span).tolist()
        streamed, counted = [], 0
        for lo in range(0, len(series), chunk):  # a block: this chunk and the rows before it
            block = np.arange(len(series))[max(0, lo - need):lo + chunk]
            found = _period_ends(layout, split, block)[0]
            streamed += found[found + span >= lo].tolist()  # windows whose last label row is new
            present = np.unique(series[lo:lo + chunk])
            first = np.array([rows[lo:lo + chunk][series[lo:lo + chunk] == s].min() for s in present])
            last = np.array([rows[lo:lo + chunk][series[lo:lo + chunk] == s].max() for s in present])
            counted += int(period_window_counts(first, last, starts[present], layout["roles"], split,
                                                layout["seq_length"], history, span, layout["stride"],
                                                layout["embargo"]).sum())
        assert sorted(streamed) == ends.tolist() and counted == len(ends)


def test_six_groups_two_tested_give_fifteen_splits_and_five_paths():
    splits = cpcv_splits(6, 2)
    paths = cpcv_paths(6, 2)
    assert len(splits) == 15 and paths.shape == (5, 6)
    assert splits[0] == (0, 1) and splits[-1] == (4, 5)
    assert paths[:, 0].tolist() == [0, 1, 2, 3, 4]  # group 0 is tested in (0,1) .. (0,5)
    assert paths[:, 5].tolist() == [4, 8, 11, 13, 14]  # group 5 in (0,5) (1,5) (2,5) (3,5) (4,5)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 9).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n - 1))))
def test_every_path_tests_every_group_once_from_a_split_that_tests_it(sizes):
    groups, k = sizes
    splits, paths = cpcv_splits(groups, k), cpcv_paths(groups, k)
    assert len(splits) == comb(groups, k)
    assert len(paths) == comb(groups - 1, k - 1) == k * comb(groups, k) // groups  # phi
    assert all(g in splits[s] for path in paths for g, s in enumerate(path))
    # every (split, tested group) is used by exactly one path
    used = sorted((int(s), g) for path in paths for g, s in enumerate(path))
    assert used == sorted((s, g) for s, chosen in enumerate(splits) for g in chosen)


def test_a_split_trains_around_its_test_groups_and_validates_before_the_last():
    edges = cpcv_group_edges(60, 6)
    assert edges.tolist() == [0, 10, 20, 30, 40, 50, 60]
    # groups 1 and 4 tested: training 0, 2-3 and 5; validation the last half of group 5
    assert cpcv_periods(edges, (1, 4), 0.5) == [(0, TRAIN), (10, TEST), (20, TRAIN), (40, TEST),
                                                (50, TRAIN), (55, VAL)]
    # the last groups tested: validation ends where the first of them begins; adjacent test
    # groups stay periods of their own
    assert cpcv_periods(edges, (4, 5), 0.3) == [(0, TRAIN), (37, VAL), (40, TEST), (50, TEST)]
    assert cpcv_periods(edges, (4, 5), 0.01) is None  # no timestamp left to validate on
