"""How the processes of a DDP run share the windows: pure index math, no I/O.

Training: every window once per epoch across ranks, and every rank the same number of batches
(DDP averages gradients step by step, so a rank with a batch fewer would wait forever). Shares
differ by at most one window; each rank splits its share into the common number of batches of
near-equal size (at most ``batch_size``), instead of padding with repeated windows or dropping
the tail. Evaluation: every window once, in contiguous shares (a rank may have a batch fewer:
evaluation has no collective per step).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Sampler

from seqtrain.errors import SeqtrainError


def share(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share ``[lo, hi)`` of ``n`` items; sizes differ by at most 1."""
    return rank * n // world, (rank + 1) * n // world


def even_sizes(n: int, parts: int) -> np.ndarray:
    """``parts`` sizes summing to ``n``, the larger first, differing by at most 1."""
    return n // parts + (np.arange(parts) < n % parts)


def common_batches(counts: list[list[int]], batch_size: int) -> int:
    """Batches every rank yields per epoch: the most that any rank needs, where ``counts[r]``
    holds the windows of each of rank ``r``'s readers (each reader fills its own batches)."""
    return max(sum(math.ceil(n / batch_size) for n in rank) for rank in counts)


def reader_batches(counts: list[int], total: int, batch_size: int) -> list[int]:
    """Split ``total`` batches among one rank's readers holding ``counts`` windows: each reader
    at least ``ceil(n / batch_size)``, the extra batches to the readers with the fullest batches
    (so no batch grows beyond ``batch_size``), never more batches than windows."""
    batches = [math.ceil(n / batch_size) for n in counts]
    for _ in range(total - sum(batches)):
        open_readers = [i for i, (n, b) in enumerate(zip(counts, batches, strict=True)) if n > b]
        if not open_readers:
            raise SeqtrainError(
                f"trainer.devices: {sum(counts)} training windows on one process cannot fill the "
                f"{total} batches per epoch the others need; use fewer devices or a smaller data.batch_size")
        fullest = max(open_readers, key=lambda i: counts[i] / batches[i])
        batches[fullest] += 1
    return batches


class BalancedBatchSampler(Sampler):
    """Training batches of one DDP rank, in memory: one permutation of all ``n`` windows per
    epoch (from ``seed`` and the epoch, the same on every rank), this rank's contiguous share of
    it, split into the common number of batches."""

    def __init__(self, n: int, batch_size: int, rank: int, world: int, seed: int = 0):
        lo, hi = share(n, rank, world)
        self.n, self.rank, self.world, self.seed, self.epoch = n, rank, world, seed, 0
        self.batches = math.ceil(math.ceil(n / world) / batch_size)
        if hi - lo < self.batches:
            raise SeqtrainError(
                f"trainer.devices: {n} training windows cannot give each of {world} processes "
                f"{self.batches} batches; use fewer devices or a larger data.batch_size")
        self.sizes = even_sizes(hi - lo, self.batches)
        self.lo, self.hi = lo, hi

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it before every training epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        mine = torch.randperm(self.n, generator=generator)[self.lo:self.hi].tolist()
        start = 0
        for size in self.sizes.tolist():
            yield mine[start:start + size]
            start += size


class ShareSampler(Sampler):
    """Evaluation windows of one DDP rank: its contiguous share, in order."""

    def __init__(self, n: int, rank: int, world: int):
        self.lo, self.hi = share(n, rank, world)
        if self.hi == self.lo:
            raise SeqtrainError(f"trainer.devices: {n} evaluation windows cannot give each of {world} "
                                "processes one; use fewer devices")

    def __len__(self) -> int:
        return self.hi - self.lo

    def __iter__(self):
        return iter(range(self.lo, self.hi))
