"""How DDP ranks share the windows: each once per epoch, every rank the same number of batches."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqtrain.data.sharding import (
    BalancedBatchSampler,
    ShareSampler,
    common_batches,
    even_sizes,
    reader_batches,
    share,
)
from seqtrain.errors import SeqtrainError


@given(n=st.integers(1, 3000), world=st.integers(2, 8), batch_size=st.integers(2, 300),
       seed=st.integers(0, 10), epoch=st.integers(0, 5))
def test_balanced_batches_cover_every_window_once_with_equal_batch_counts(n, world, batch_size, seed, epoch):
    if n < world:
        with pytest.raises(SeqtrainError, match="trainer.devices"):
            BalancedBatchSampler(n, batch_size, 0, world, seed)  # rank 0 would get none
        return
    samplers = [BalancedBatchSampler(n, batch_size, rank, world, seed) for rank in range(world)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    batches = [list(sampler) for sampler in samplers]
    assert len({len(b) for b in batches}) == 1 == len({len(s) for s in samplers})  # steps in lockstep
    assert len(batches[0]) == len(samplers[0]) == math.ceil(math.ceil(n / world) / batch_size)
    seen = sorted(i for rank in batches for batch in rank for i in batch)
    assert seen == list(range(n))  # each window exactly once: nothing padded, nothing dropped
    for rank in batches:
        sizes = [len(batch) for batch in rank]
        assert max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_each_epoch_draws_a_new_order_the_same_on_every_rank():
    def order(rank, epoch):
        sampler = BalancedBatchSampler(100, 8, rank, 2, seed=3)
        sampler.set_epoch(epoch)
        return [i for batch in sampler for i in batch]

    assert order(0, 0) != order(0, 1)
    assert order(0, 1) == order(0, 1)
    assert sorted(order(0, 1) + order(1, 1)) == list(range(100))


@given(n=st.integers(0, 500), world=st.integers(1, 8))
def test_shares_are_contiguous_and_cover_everything(n, world):
    bounds = [share(n, rank, world) for rank in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1
    if n >= world:
        assert [list(ShareSampler(n, rank, world)) for rank in range(world)] == \
            [list(range(lo, hi)) for lo, hi in bounds]


@given(counts=st.lists(st.lists(st.integers(0, 400), min_size=1, max_size=4), min_size=2, max_size=4),
       batch_size=st.integers(1, 64))
def test_readers_of_every_rank_fill_the_common_number_of_batches(counts, batch_size):
    total = common_batches(counts, batch_size)
    for rank in counts:
        if sum(rank) < total:  # fewer windows than batches: refused with one line
            with pytest.raises(SeqtrainError, match="trainer.devices"):
                reader_batches(rank, total, batch_size)
            continue
        batches = reader_batches(rank, total, batch_size)
        assert sum(batches) == total
        for n, b in zip(rank, batches, strict=True):
            assert b <= n and (n == 0 or b >= math.ceil(n / batch_size))
            if b:
                sizes = even_sizes(n, b)
                assert sizes.sum() == n and sizes.max() <= batch_size and sizes.min() >= 1
