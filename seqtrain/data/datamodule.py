"""Windows as index arithmetic over one contiguous tensor, served by DataLoaders.

A dataset holds only the start rows of its windows and an ``unfold`` view of the inputs. A batch
is copied out in one vectorised indexing operation; no window is ever copied on its own.
"""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seqtrain.data.prepare import PreparedData


class WindowDataset(Dataset):
    """Windows ending at ``ends`` over ``inputs`` ``(N, F)`` and ``labels`` ``(N,)``.

    Items are dicts: ``x`` ``(L, F)`` (a view for single items), ``y`` (a class id, or ``(k,)``
    regression targets), ``index`` (the window's position in ``ends``, to map predictions back
    to rows) and, when columns are known in advance, ``future`` ``(k, K)``: those columns at the
    label rows.
    """

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, ends: np.ndarray,
                 seq_length: int, horizon: int, output_steps: int, classification: bool,
                 known_columns: list[int] | None = None):
        self.labels = labels
        # Known-in-advance columns, read at the label rows for decoders (only these columns).
        self.future = inputs[:, known_columns].contiguous() if known_columns else None
        # (N-L+1, L, F) view: entry s is the window of rows s .. s+L-1. No data is copied here;
        # a batch is copied out in one indexing operation.
        self.windows = inputs.unfold(0, seq_length, 1).transpose(1, 2)
        self.starts = torch.as_tensor(ends, dtype=torch.long) - (seq_length - 1)
        self.label_offsets = torch.arange(horizon, horizon + output_steps) + (seq_length - 1)
        self.classification = classification

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        start = int(self.starts[i])
        rows = start + self.label_offsets
        y = self.labels[rows]
        item = {"x": self.windows[start], "y": y[0] if self.classification else y, "index": i}
        if self.future is not None:
            item["future"] = self.future[rows]
        return item

    def __getitems__(self, indices: list[int]) -> dict:
        index = torch.as_tensor(indices, dtype=torch.long)
        start = self.starts[index]
        rows = start[:, None] + self.label_offsets
        y = self.labels[rows]
        batch = {"x": self.windows[start].contiguous(),
                 "y": y[:, 0] if self.classification else y, "index": index}
        if self.future is not None:
            batch["future"] = self.future[rows]
        return batch


def batch_as_is(batch: dict) -> dict:
    """Collate for ``__getitems__``: the dataset already returns a whole batch."""
    return batch


class SeqDataModule(L.LightningDataModule):
    def __init__(self, data: PreparedData, batch_size: int, num_workers: int = 0,
                 pin_memory: bool = False, persistent_workers: bool = True):
        super().__init__()
        self.data = data
        self.batch_size, self.num_workers = batch_size, num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        classification = data.task == "classification"
        inputs = torch.from_numpy(data.inputs)
        labels = torch.from_numpy(data.labels)
        state = data.state
        known = [data.input_names.index(c) for c in data.known_future]
        self.datasets = {
            name: WindowDataset(inputs, labels, ends, state["seq_length"], state["horizon"],
                                state["output_steps"], classification, known)
            for name, ends in data.ends.items()
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split], batch_size=self.batch_size, shuffle=shuffle,
            drop_last=False, collate_fn=batch_as_is, num_workers=self.num_workers,
            pin_memory=self.pin_memory, persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
