"""Loader throughput in windows/s: seqtrain's batched gather against the raw ceiling.

    python benchmarks/loader_throughput.py [--rows 1000000] [--features 16] [--seq-length 64]

- ceiling: a preloaded tensor, windows as an ``unfold`` view, one random batch copied out;
- seqtrain: ``WindowDataset`` through a shuffled DataLoader (batched ``__getitems__``), with 0
  and 2 worker processes;
- per-window: the same windows fetched one ``__getitem__`` at a time and stacked by the default
  collate, the pattern seqtrain avoids;
- streaming: the same table written to Parquet (row groups of 65,536 rows) and read back by
  ``StreamingWindows`` with 0 and 2 workers (training shuffle buffer of 8,192 windows).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from hydra import compose, initialize_config_module
from torch.utils.data import DataLoader

from seqtrain.data.datamodule import WindowDataset, batch_as_is
from seqtrain.data.rows import RowBlock
from seqtrain.data.stream_plan import plan_stream
from seqtrain.data.stream_windows import StreamingWindows


def rate(batches, seconds: float, batch_size: int) -> float:
    """Windows per second over ``batches`` (an iterator), for about ``seconds``."""
    start, count = time.perf_counter(), 0
    for batch in batches:
        count += len(batch["y"]) if isinstance(batch, dict) else len(batch)
        if time.perf_counter() - start > seconds:
            break
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--seq-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rows, length, batch = args.rows, args.seq_length, args.batch_size

    inputs = torch.randn(rows, args.features)
    labels = torch.randint(0, 2, (rows,))
    ends = np.arange(length - 1, rows - 1)
    index = torch.arange(rows)
    block = RowBlock(inputs, labels, index, torch.zeros(rows, dtype=torch.long), index, length, 1, 1,
                     classification=True)
    dataset = WindowDataset(block, ends, with_eval_fields=False)  # as training batches are

    def ceiling():
        view = inputs.unfold(0, length, 1).transpose(1, 2)  # (windows, L, F), no copy
        while True:
            yield view[torch.randint(0, len(view), (batch,))].contiguous()

    results = {"ceiling (unfold view, in-process)": rate(ceiling(), args.seconds, batch)}
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=batch_as_is,
                            num_workers=workers, persistent_workers=workers > 0)
        next(iter(loader))  # start workers outside the timing
        results[f"seqtrain WindowDataset, {workers} workers"] = rate(iter(loader), args.seconds, batch)

    class PerWindow(torch.utils.data.Dataset):
        def __len__(self):
            return len(dataset)

        def __getitem__(self, i):
            return dataset[i]

    naive = DataLoader(PerWindow(), batch_size=batch, shuffle=True)
    results["per-window __getitem__ + default collate"] = rate(iter(naive), args.seconds, batch)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.parquet"
        columns = {f"f{j}": inputs[:, j].numpy() for j in range(args.features)}
        columns["time"] = np.arange(rows)
        columns["up"] = labels.numpy()
        pq.write_table(pa.table(columns), path, row_group_size=65_536)
        with initialize_config_module("seqtrain.conf", version_base="1.3"):
            cfg = compose("config", overrides=[
                "data=parquet", f"data.path={path}", "data.target=up", "data.horizon=0",
                f"data.seq_length={length}", "data.target_as_input=false",
                "data.split.val=0.0001", "data.split.test=0.0001"]).data
        stream = plan_stream(cfg, "classification", str(path))
        for workers in (0, 2):
            streamed = StreamingWindows(stream, "train", batch, shuffle=True, num_workers=workers)
            loader = DataLoader(streamed, batch_size=None, collate_fn=batch_as_is,
                                num_workers=workers, persistent_workers=workers > 0)
            name = f"streaming (Parquet row groups), {workers} workers"
            results[name] = rate(iter(loader), args.seconds, batch)

    ceiling_rate = results["ceiling (unfold view, in-process)"]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    print(f"table: {rows:,} rows x {args.features} features; windows L={length}, batch {batch}\n")
    print("| loader | windows/s | vs ceiling |\n|---|---:|---:|")
    for name, value in results.items():
        print(f"| {name} | {value:,.0f} | {value / ceiling_rate:.2f} |")


if __name__ == "__main__":
    main()
