"""Windows served by DataLoaders, in memory or streamed.

An in-memory dataset holds only the end rows of its windows and a ``RowBlock`` (an ``unfold``
view of the inputs, see ``rows.py``). A batch is copied out in one vectorised indexing
operation; no window is ever copied on its own.
"""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from seqtrain.data.memory import TableData
from seqtrain.data.rows import RowBlock, known_label_lag, time_as_number
from seqtrain.data.sharding import BalancedBatchSampler, ShareSampler
from seqtrain.data.stream_windows import StreamingWindows
from seqtrain.data.windows import row_numbers, series_bounds


class WindowDataset(Dataset):
    """The windows ending at rows ``ends`` of a ``RowBlock``, served a batch at a time.

    A batch is a dict: ``x`` ``(B, L, F)``; ``y`` ``(B,)`` class ids or ``(B, k)`` scaled
    targets; ``y_last`` the latest label known at each window's end (persistence; absent with
    ``horizon=0`` and no embargo, see ``known_label_lag``); ``y_history`` ``(B, L)`` a regression's
    latest L known labels, oldest first (NaN before its series' first row; DLinear reads them);
    ``window`` ``(B, 2)`` = (series code, row number of the last row in its series), which
    identifies a window; ``end_time`` ``(B,)`` and ``label_time`` ``(B, k)`` (see
    ``time_as_number``); ``mask`` ``(B, L)`` (with ``data.pad_short``: False on the zero rows
    left-padded before a series' first row); and, when
    columns are known in advance, ``future`` ``(B, k, K)``: those columns at the label rows.
    """

    def __init__(self, block: RowBlock, ends: np.ndarray, with_eval_fields: bool = True):
        self.block, self.with_eval_fields = block, with_eval_fields
        self.ends = torch.as_tensor(ends, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.ends)

    def __getitems__(self, indices: list[int]) -> dict:
        return self.block.batch(self.ends[torch.as_tensor(indices, dtype=torch.long)], self.with_eval_fields)

    def __getitem__(self, i: int) -> dict:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


class EpochLoader(DataLoader):
    """A DataLoader that tells its dataset which epoch each pass is (``dataset.set_epoch``), so a
    dataset that shuffles itself draws a new, reproducible order every epoch, in worker processes
    too. The trainer names the epoch (``set_epoch``); otherwise passes are counted from
    ``first_epoch``."""

    def __init__(self, *args, first_epoch: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.next_epoch = first_epoch

    def set_epoch(self, epoch: int) -> None:
        self.next_epoch = epoch

    def __iter__(self):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.next_epoch)
        self.next_epoch += 1
        return super().__iter__()


class ResidentBatches:
    """Batches gathered where the rows live (``data.device_resident``: the whole in-memory table
    on the GPU): no DataLoader, no worker, no host-to-device copy but one index tensor per
    epoch. ``batches`` yields each batch's window indices (a sampler of ``sharding.py``, or
    consecutive runs for evaluation); ``set_epoch`` reaches it through ``DataEpoch``."""

    def __init__(self, dataset: WindowDataset, batches):
        self.dataset, self.batches = dataset, batches

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        batches = [list(b) for b in self.batches]
        if not batches:
            return
        ends = self.dataset.ends  # on the device, with the rows
        order = torch.as_tensor([i for b in batches for i in b], dtype=torch.long).to(ends.device)
        for index in order.split([len(b) for b in batches]):
            yield self.dataset.block.batch(ends[index], self.dataset.with_eval_fields)


def batch_as_is(batch: dict) -> dict:
    """Collate for ``__getitems__``: the dataset already returns a whole batch."""
    return batch


class SeqDataModule(L.LightningDataModule):
    """DataLoaders over in-memory windows (``TableData``) or streamed ones (``StreamData``), cut
    by the data state's window rule (stride, embargo: ``data.state.window``)."""

    def __init__(self, data, batch_size: int, num_workers: int = 0, pin_memory: bool = False,
                 persistent_workers: bool = True, shuffle_buffer: int = 8192, seed: int = 0,
                 first_epoch: int = 0, season: int = 0, rank: int = 0, world: int = 1,
                 device: torch.device | str | None = None):
        super().__init__()
        self.device = device  # in memory: gather batches on this device (data.device_resident)
        self.rank, self.world, self.seed = rank, world, seed  # DDP: this process's share (sharding.py)
        self.first_epoch = first_epoch  # a resumed run continues the epochs' shuffles
        self.data = data
        self.batch_size, self.num_workers = batch_size, num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.streaming = not isinstance(data, TableData)
        self._last_rows: dict = {}  # (split, size) -> last_rows' windows, read once
        if self.streaming:
            self.datasets = {
                split: StreamingWindows(data, split, batch_size, shuffle=split == "train",
                                        shuffle_buffer=shuffle_buffer, num_workers=num_workers,
                                        seed=seed, season=season, rank=rank, world_size=world)
                for split in ("train", "val", "test")
            }
            return
        row_number = row_numbers(series_bounds(data.series))
        spec = data.state.window
        block = RowBlock(
            torch.from_numpy(data.inputs), torch.from_numpy(data.labels),
            torch.from_numpy(time_as_number(data.times)), torch.from_numpy(data.series),
            torch.from_numpy(row_number), spec.seq_length, spec.horizon, spec.output_steps,
            data.task == "classification", [data.input_names.index(c) for c in data.known_future],
            spec.pad_short, season, torch.from_numpy(data.moves) if data.moves is not None else None,
            known_label_lag(spec.horizon, spec.embargo),
            torch.from_numpy(data.weights) if getattr(data, "weights", None) is not None else None,
        )
        if device is not None:
            block = block.to(device)
        # training batches need no identity or times: only evaluation maps outputs back to rows
        self.datasets = {name: WindowDataset(block, ends, with_eval_fields=name != "train")
                         for name, ends in data.ends.items()}
        repeats = (data.state.cases or {}).get("repeats", 1)
        if repeats > 1:  # data.epoch_cases: an epoch goes through the training cases this many times
            self.datasets["train"] = WindowDataset(block, np.tile(data.ends["train"], repeats),
                                                   with_eval_fields=False)
        if device is not None:
            for dataset in self.datasets.values():
                dataset.ends = dataset.ends.to(device)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        common = {"num_workers": self.num_workers, "pin_memory": self.pin_memory,
                  "persistent_workers": self.persistent_workers, "collate_fn": batch_as_is}
        if self.streaming:  # the dataset yields whole batches and shuffles itself, once per epoch
            return EpochLoader(self.datasets[split], batch_size=None, first_epoch=self.first_epoch,
                               **common)
        dataset = self.datasets[split]
        if self.device is not None:  # resident: index batches, gathered on the device
            n = len(dataset)
            if shuffle:
                return ResidentBatches(dataset, BalancedBatchSampler(
                    n, self.batch_size, self.rank, self.world, self.seed))
            share = ShareSampler(n, self.rank, self.world) if self.world > 1 else range(n)
            return ResidentBatches(dataset, BatchSampler(share, self.batch_size, drop_last=False))
        if self.world > 1 and shuffle:  # every rank the same number of batches, each window once
            sampler = BalancedBatchSampler(len(dataset), self.batch_size, self.rank, self.world, self.seed)
            return DataLoader(dataset, batch_sampler=sampler, **common)
        if self.world > 1:  # evaluation: each rank its contiguous share
            return DataLoader(dataset, batch_size=self.batch_size,
                              sampler=ShareSampler(len(dataset), self.rank, self.world), **common)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, drop_last=False, **common)

    def sample_batch(self, split: str, size: int = 512) -> dict:
        """Up to ``size`` windows of ``split`` (spread evenly over it in memory; the first ones
        when streaming)."""
        dataset = self.datasets[split]
        if self.streaming:
            batches, count, was = [], 0, (dataset.rank, dataset.world_size)
            dataset.rank, dataset.world_size = 0, 1  # the split's first windows, on every rank
            try:
                for batch in dataset:
                    batches.append(batch)
                    count += len(batch["y"])
                    if count >= size:
                        break
            finally:
                dataset.rank, dataset.world_size = was
            return {k: torch.cat([b[k] for b in batches])[:size] for k in batches[0]}
        picks = np.linspace(0, len(dataset) - 1, min(size, len(dataset))).round().astype(int)
        return {k: v.cpu() for k, v in dataset.__getitems__(picks.tolist()).items()}

    def last_rows(self, split: str, size: int) -> dict:
        """Up to ``size`` windows of ``split``, spread evenly over it (streamed: every k-th in
        stored order, one pass over the split), each only as its last input row, label, latest
        known label and label history (``RowBlock.last_rows``): no whole window is copied. Kept
        once read (the audit, DLinear and the report's baselines read the same windows;
        streamed, each read is a pass)."""
        if (split, size) not in self._last_rows:
            self._last_rows[split, size] = self._read_last_rows(split, size)
        return self._last_rows[split, size]

    def _read_last_rows(self, split: str, size: int) -> dict:
        dataset = self.datasets[split]
        if not self.streaming:
            picks = np.linspace(0, len(dataset) - 1, min(size, len(dataset))).round().astype(int)
            rows = dataset.block.last_rows(dataset.ends[torch.as_tensor(picks)])
            return {k: v.cpu() for k, v in rows.items()}  # for NumPy, wherever the rows live
        # every step-th window of the whole split in stored order, spread over it as in memory
        # (the first ones alone could miss whole series or the recent past), the same whichever
        # DDP rank asks and whenever: unshuffled, not only this rank's share
        total = int(dataset.windows_before[-1])
        step = max(1, -(-total // size))
        parts, seen = [], 0
        was = (dataset.with_eval_fields, dataset.rank, dataset.world_size, dataset.shuffle)
        dataset.with_eval_fields, dataset.rank, dataset.world_size, dataset.shuffle = True, 0, 1, False
        try:
            for batch in dataset:
                keep = torch.from_numpy((np.arange(seen, seen + len(batch["y"])) % step) == 0)
                seen += len(batch["y"])
                parts.append({"x_last": batch["x"][keep, -1].clone(), "y": batch["y"][keep],  # not views
                              **{k: batch[k][keep] for k in ("y_last", "y_history") if k in batch}})
                if step == 1 and seen >= size:
                    break
        finally:
            dataset.with_eval_fields, dataset.rank, dataset.world_size, dataset.shuffle = was
        return {k: torch.cat([p[k] for p in parts])[:size] for k in parts[0]}

    def whole_windows(self, split: str) -> dict:
        """Every window of ``split`` (in memory): ``x`` ``(n, L, F)`` on the CPU, padded rows
        zero; ``y`` class ids or scaled targets; ``code`` each window's series (a case's code).
        For the baselines of cases, which compare whole windows."""
        dataset = self.datasets[split]
        block = dataset.block
        ends = torch.as_tensor(self.data.ends[split], dtype=torch.long, device=dataset.ends.device)
        return {"x": block.inputs_of(ends)["x"].cpu(), "y": block.labels[ends].cpu().numpy(),
                "code": block.series[ends].cpu().numpy()}

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
