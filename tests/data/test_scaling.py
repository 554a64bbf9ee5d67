"""Scaling in slices of rows gives the very numbers of the whole-table expression."""

import numpy as np
import pytest

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
