"""Out-of-core windows, streamed each epoch from the plan of ``stream_plan``.

Each epoch streams row groups, joins each after the last ``L + h + k - 2`` rows of each series
carried from earlier row groups (``chunks.ChunkJoiner``), and cuts windows with the same rule as
in memory (``block_window_ends``). A window belongs to the row group holding its last label row,
so row groups are dealt to DataLoader workers and DDP ranks as contiguous, row-balanced ranges,
each reading its halo first: every window is produced exactly once per epoch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from seqtrain.data import sharding, source
from seqtrain.data.chunks import ChunkJoiner
from seqtrain.data.columns import float_column, read_target, time_values
from seqtrain.data.periods import period_window_ends
from seqtrain.data.reader_rules import SeriesCodes
from seqtrain.data.rows import RowBlock, known_label_lag, season_offsets, time_as_number
from seqtrain.data.stream_plan import StreamData
from seqtrain.data.windows import SPLIT_NAMES, block_window_ends, series_bounds, window_reach


def shard_ranges(weights: np.ndarray, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous ranges of row groups, one per shard, with about equal total weight each."""
    cumulative = np.concatenate([[0], np.cumsum(weights)])
    cuts = np.searchsorted(cumulative, np.linspace(0, cumulative[-1], n_shards + 1), side="left")
    cuts[0], cuts[-1] = 0, len(weights)
    cuts = np.maximum.accumulate(cuts)
    return [(int(cuts[i]), int(cuts[i + 1])) for i in range(n_shards)]


class StreamingWindows(IterableDataset):
    """Batches of the windows of one split, streamed from row groups.

    Each DDP rank takes a contiguous share of the split's windows (in stream order) and reads only
    the row groups that hold it; each of its DataLoader workers reads its own contiguous range of
    those (after its halo). Under DDP every rank yields the same number of training batches
    (``sharding``). Training batches are shuffled through a buffer of ``shuffle_buffer`` windows;
    evaluation batches come in stream order. ``rank``/``world_size`` default to
    ``torch.distributed``'s when it is initialised.
    """

    def __init__(self, data: StreamData, split: str, batch_size: int, shuffle: bool,
                 shuffle_buffer: int = 8192, num_workers: int = 0,
                 rank: int | None = None, world_size: int | None = None, with_eval_fields: bool | None = None,
                 seed: int = 0, season: int = 0):
        super().__init__()
        # the shuffle of each pass comes from (seed, epoch, rank, worker): reproducible, new every
        # epoch, and independent of when a loader creates its workers; the epoch lives in shared
        # memory so that persistent workers see the main process's ``set_epoch``
        self.seed = int(seed)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        # training batches need no identity or times: only evaluation maps outputs back to rows
        self.with_eval_fields = split != "train" if with_eval_fields is None else with_eval_fields
        self.data, self.split, self.split_id = data, split, SPLIT_NAMES.index(split)
        self.batch_size, self.shuffle, self.shuffle_buffer = batch_size, shuffle, shuffle_buffer
        self.num_workers, self.rank, self.world_size = num_workers, rank, world_size
        spec = data.state.window
        self.stride, self.embargo = spec.stride_of(self.split_id), spec.embargo  # the split's, saved
        self.seq_length, self.horizon, self.steps = spec.seq_length, spec.horizon, spec.output_steps
        self.need = spec.rows
        self.season = season
        # rows kept per series for the next chunk: a window's history, its latest known label
        # and its seasonal-naive rows and label history (regression baselines)
        self.known_lag = known_label_lag(spec.horizon, spec.embargo)
        back = self.known_lag or 0
        if season and self.known_lag is not None and data.task == "regression":
            back = max(back, int(-season_offsets(spec.horizon, spec.output_steps, season, back).min()))
        if self.known_lag is not None and data.task == "regression":  # the known labels' history
            back = max(back, self.known_lag + spec.seq_length - 1)
        # a built label reads rows before its row (a move h, a triple-barrier label also the
        # volatility's): each chunk is labelled after that many carried rows, and the first
        # chunk read reaches that much further back, so the earliest carried labels are as in memory
        self.keep = max(self.need - 1, spec.span + back, data.state.label_reach)
        self.reach = self.keep + data.state.label_reach
        self.history = spec.history
        # shards are balanced by this split's windows, so every reader gets a fair share
        self.row_group_windows = data.row_group_windows[split]
        self.windows_before = np.concatenate([[0], np.cumsum(self.row_group_windows)])  # per row group
        self.known_columns = [data.input_names.index(c) for c in data.known_future]
        self.series = SeriesCodes(data.group_col, data.series_names)  # name -> code, built once

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose shuffle the next pass draws."""
        self._epoch.fill_(int(epoch))

    def _world(self) -> tuple[int, int]:
        if self.rank is not None:
            return self.rank, self.world_size or 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _ranges(self, workers: int, rank: int | None = None) -> list[tuple[int, int]]:
        """A rank's row-group range split over its ``workers`` (balanced by windows): under DDP
        the row groups holding the rank's share of the windows (``_window_share``)."""
        own, world = self._world()
        rank = own if rank is None else rank
        if world > 1:
            first, last = self._window_share(rank)
            lo = int(np.searchsorted(self.windows_before, first, side="right")) - 1
            hi = max(lo, int(np.searchsorted(self.windows_before, last, side="left")))
        else:
            lo, hi = 0, len(self.row_group_windows)
        return [(lo + a, lo + b) for a, b in shard_ranges(self.row_group_windows[lo:hi], workers)]

    def _window_share(self, rank: int) -> tuple[int, int]:
        """DDP: the rank's contiguous share of the split's windows, counted in stream order (row
        group by row group): every window once, shares within one window of each other, and each
        rank reads only the row groups of its share (and their halo)."""
        return sharding.share(int(self.windows_before[-1]), rank, self._world()[1])

    def _reader_windows(self, workers: int, rank: int | None = None) -> list[int]:
        """Windows each of a rank's readers yields: its row groups' windows within the rank's
        share (in one process the share is every window)."""
        first, last = self._window_share(self._world()[0] if rank is None else rank)
        before = self.windows_before
        return [max(0, min(last, int(before[hi])) - max(first, int(before[lo])))
                for lo, hi in self._ranges(workers, rank)]

    def _batch_counts(self, workers: int) -> list[int]:
        """Batches each of this rank's readers yields. Training under DDP: every rank the same
        total (``sharding.common_batches``), each reader's windows split into near-equal batches."""
        counts = self._reader_windows(workers)
        world = self._world()[1]
        if world == 1 or not self.shuffle:
            return [math.ceil(n / self.batch_size) for n in counts]
        total = sharding.common_batches([self._reader_windows(workers, r) for r in range(world)],
                                        self.batch_size)
        return sharding.reader_batches(counts, total, self.batch_size)

    def __len__(self) -> int:
        """Batches this rank yields per epoch (all its workers together)."""
        return sum(self._batch_counts(max(self.num_workers, 1)))

    def __iter__(self):
        info = get_worker_info()
        epoch = int(self._epoch)
        if info is None:  # iterated directly, not by a loader: the next pass shuffles anew
            self._epoch += 1
        workers, reader = (info.num_workers, info.id) if info else (1, 0)
        lo, hi = self._ranges(workers)[reader]
        rank, world = self._world()
        sizes = None  # training under DDP: this reader's planned batch sizes
        if world > 1 and self.shuffle:
            windows = self._reader_windows(workers)[reader]
            sizes = sharding.even_sizes(windows, self._batch_counts(workers)[reader]).tolist()
        keep = self._window_share(rank) if world > 1 else None
        seen = int(self.windows_before[lo])  # windows before this reader's first row group
        holding = np.flatnonzero(self.row_group_windows[lo:hi])  # row groups with windows of this split
        if len(holding) == 0:
            return
        lo, hi = lo + int(holding[0]), lo + int(holding[-1]) + 1  # the rest is never read
        rng = np.random.default_rng([self.seed, epoch, rank, reader])
        start = self._first_row_group(lo, hi)
        counters = np.zeros(len(self.data.series_names), np.int64)
        for i in range(start):
            counters[self.data.row_group_series[i]] += self.data.row_group_counts[i]
        joiner, pending = ChunkJoiner(self.keep, counters), []
        for i in range(start, hi):
            block, is_new = self._block(i, joiner)
            if i >= lo:
                ends = self._ends(block, is_new)
                if keep is not None:  # DDP: only this rank's share of the windows
                    index = seen + np.arange(len(ends))
                    seen += len(ends)
                    ends = ends[(index >= keep[0]) & (index < keep[1])]
                if len(ends):
                    pending.append(self._windows(block, ends))
                    if sum(len(p["y"]) for p in pending) >= (self.shuffle_buffer if self.shuffle
                                                             else self.batch_size):
                        pending = yield from self._emit(pending, rng, final=False, sizes=sizes)
            joiner.carry(block)
        yield from self._emit(pending, rng, final=True, sizes=sizes)

    def _block(self, i: int, joiner: ChunkJoiner):
        """Row group ``i`` joined after the carried rows, grouped by series; which rows are new."""
        data = self.data
        table = source.read_in_period(data.row_groups[i], data.dataset.schema, data.columns, data.time_col,
                                      data.period)
        times = time_values(table.column(data.time_col), data.time_col)
        codes = self.series.codes(table)
        _, y = read_target(table.column(data.target), data.target, data.task)
        state = data.state
        x = state.model_inputs(state.raw_inputs(table, codes, data.series_names), times, y)
        built = state.label != "value"  # moves read earlier rows: labelled after joining the carry
        labels = (np.zeros(len(y), np.float32 if data.task == "regression" else np.int64) if built
                  else state.encode_labels(y, np.array([0, len(y)])))
        new = {"x": x, "labels": labels, "times": time_as_number(times), "series": codes,
               "row_number": np.full(len(codes), -1, np.int64), "target": y}
        side = state.side_column
        if side is not None:  # the meta-labels' side, read at window ends
            new["side"] = float_column(table, side).astype(np.float64)
        if state.barrier is not None:
            new["touch"] = np.zeros(len(y), np.int64)
        block, is_new = joiner.join(new)
        joiner.number(block, is_new)
        if built:  # each row labelled once, when new, with the rows before it in the block
            made = state.build_labels(block["target"], series_bounds(block["series"]), block.get("side"))
            block["labels"][is_new] = state.encode_values(made.values)[is_new]
            if made.touch is not None:
                block["touch"][is_new] = made.touch[is_new]
            moves = state.realised_moves(made.moves)
            if moves is not None:  # read at label rows only, whose h rows before are in the block
                block["moves"] = moves
        return block, is_new

    def _windows(self, block: dict, ends: np.ndarray) -> dict:
        rows = RowBlock(
            torch.from_numpy(np.ascontiguousarray(block["x"])), torch.from_numpy(block["labels"]),
            torch.from_numpy(block["times"]), torch.from_numpy(block["series"]),
            torch.from_numpy(block["row_number"]), self.seq_length, self.horizon, self.steps,
            self.data.task == "classification", self.known_columns, self.data.state.window.pad_short,
            self.season, torch.from_numpy(block["moves"]) if "moves" in block else None, self.known_lag,
        )
        return rows.batch(torch.from_numpy(ends), with_eval_fields=self.with_eval_fields)

    def _ends(self, block: dict, is_new: np.ndarray) -> np.ndarray:
        bounds = series_bounds(block["series"])
        times = block["times"]
        if self.data.state.time_dtype.startswith("datetime64"):
            times = times.view("datetime64[ns]")
        row_split, row_period = self.data.row_split(times, block["series"], block["row_number"])
        present = block["series"][bounds[:-1]]
        if row_period is None:
            reach = (window_reach(block["touch"], bounds, self.horizon, self.data.state.window.span)
                     if "touch" in block else None)
            ends = block_window_ends(bounds, block["row_number"], row_split, self.data.segments[present],
                                     self.split_id, self.history, self.horizon, self.steps, self.stride,
                                     self.embargo, reach)
        else:  # a label counted to t+h, where every touch row lies at the latest
            ends = period_window_ends(bounds, block["row_number"], row_period,
                                      self.data.period_starts[present], self.data.periods[1], self.split_id,
                                      self.data.state.window.reads, self.history, self.horizon, self.steps,
                                      self.stride, self.embargo)
        return ends[is_new[ends + self.horizon + self.steps - 1]]

    def _first_row_group(self, lo: int, hi: int) -> int:
        """The first row group to read for the windows of row groups ``lo .. hi-1``: the halo of their
        history, reaching back ``reach`` rows of each of their series, so that the latest known
        label and the seasonal rows (and, for a move label, the rows it moves from) are read as
        in memory (not cut off at a chunk's edge). A series with fewer rows before ``lo`` wants
        them all, and one listed later none (not a read back to the table's start)."""
        start = int(self.data.halo_start[lo:hi].min())
        before = np.zeros(len(self.data.series_names), np.int64)  # rows of each series before lo
        for i in range(lo):
            before[self.data.row_group_series[i]] += self.data.row_group_counts[i]
        wanted = {int(c): min(self.reach, int(before[c])) for i in range(lo, hi)
                  for c in self.data.row_group_series[i] if before[c]}
        i = lo
        while i > 0 and wanted:
            i -= 1
            for code, n in zip(self.data.row_group_series[i].tolist(), self.data.row_group_counts[i].tolist(),
                               strict=True):
                if code in wanted:
                    wanted[code] -= n
                    if wanted[code] <= 0:
                        del wanted[code]
        return min(start, i)

    def _emit(self, pending: list[dict], rng, final: bool, sizes: list[int] | None = None):
        """Yield full batches (shuffled when training); return what is left for later. ``sizes``:
        the planned sizes of the batches still to come (training under DDP), consumed here."""
        batch = {k: torch.cat([p[k] for p in pending]) for k in pending[0]} if pending else None
        if batch is None:
            return []
        n = len(batch["y"])
        if self.shuffle:
            order = torch.from_numpy(rng.permutation(n))
            batch = {k: v[order] for k, v in batch.items()}
        if sizes is None:
            full = n if final else n - n % self.batch_size
            cuts = [*range(0, full, self.batch_size), full]
        else:  # as many planned batches as the windows at hand fill (all of them at the end)
            cuts = [0]
            while sizes and (final or cuts[-1] + sizes[0] <= n):
                cuts.append(min(n, cuts[-1] + sizes.pop(0)))
            full = cuts[-1]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            yield {k: v[a:b] for k, v in batch.items()}
        return [{k: v[full:] for k, v in batch.items()}] if full < n else []


