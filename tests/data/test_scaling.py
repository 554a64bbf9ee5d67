"""Scaling in slices of rows gives the very numbers of the whole-table expression."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrain.data import scaling
from seqtrain.data.scaling import StandardScaler


@pytest.mark.parametrize("rows", [1, 1000, scaling.CHUNK_ROWS, scaling.CHUNK_ROWS * 2 + 17])
def test_sliced_transform_equals_the_whole_table_expression_bit_for_bit(rows):
    rng = np.random.default_rng(rows)
    x = (rng.normal(3.0, 7.0, (rows, 5)) * rng.uniform(0.1, 1e4, 5)).astype(np.float32)
    scaler = StandardScaler.fit(x[: max(1, rows // 2)])
    whole = ((x.astype(np.float64) - scaler.mean) / scaler.std).astype(np.float32)
    assert np.array_equal(scaler.transform(x), whole)
    assert scaler.transform(x).dtype == np.float32
    single = StandardScaler.fit(x[:, :1])
    assert np.array_equal(single.transform(x[:, 0]), ((x[:, 0].astype(np.float64) - single.mean[0])
                                                      / single.std[0]).astype(np.float32))


def test_in_place_transform_gives_the_same_numbers():
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 2.0, (scaling.CHUNK_ROWS + 300, 3)).astype(np.float32)
    scaler = StandardScaler.fit(x)
    expected = scaler.transform(x)
    assert scaler.transform(x, out=x) is x
    assert np.array_equal(x, expected)


def whole_statistics(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The expression the scaler was first written as: numpy over a float64 copy of the rows."""
    values = x[rows].astype(np.float64)
    std = values.std(axis=0)
    return values.mean(axis=0), np.where(std > 1e-12, std, 1.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 3 * scaling.CHUNK_ROWS), st.integers(1, 9), st.floats(0.05, 1.0), st.integers(0, 2**16))
def test_sliced_fit_equals_numpy_over_the_whole_training_rows_bit_for_bit(rows, columns, share, seed):
    """A slice-at-a-time fit of the training rows (no float64 copy of them) gives numpy's mean
    and std of those rows to the last bit, so scaled inputs and predictions do not move."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(0.0, 1.0, (rows, columns)) * rng.uniform(0.01, 1e4, columns)
         + rng.uniform(-1e5, 1e5, columns)).astype(np.float32)
    x[:, 0] = 7.0  # a constant column keeps std 1
    train = rng.random(rows) < share
    train[0] = True
    scaler = StandardScaler.fit(x, train)
    mean, std = whole_statistics(x, train)
    assert np.array_equal(scaler.mean, mean) and np.array_equal(scaler.std, std)
    assert scaler.std[0] == 1.0


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want) / np.abs(want)))


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([1, 7, 1000, 8_192, 65_536]), st.integers(2, 40_000), st.integers(2, 5),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**16))
def test_fit_a_slice_at_a_time_is_the_whole_table_fit_at_large_offsets(chunk, rows, columns, dtype, seed):
    """The reference of the in-memory fit: numpy's mean and std over the whole training rows in
    float64. A level of 1e6 with a spread of 1 (prices, timestamps as numbers) is where a
    one-pass sum of squares loses digits; the fit sums deviations from the mean in a second
    pass, whatever the slice size, and gives numpy's statistics to the last bit (so within the
    1e-12 relative asked of it)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(1e6, 1.0, (rows, columns)).astype(dtype)
    train = rng.random(rows) < 0.7
    train[:2] = True
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scaling, "CHUNK_ROWS", chunk)
        scaler = StandardScaler.fit(x, train)
    mean, std = whole_statistics(x, train)
    assert relative_error(scaler.mean, mean) <= 1e-12 and relative_error(scaler.std, std) <= 1e-12
    assert np.array_equal(scaler.mean, mean) and np.array_equal(scaler.std, std)
