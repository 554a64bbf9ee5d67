"""Streaming memory: train on a Parquet table several times larger than the memory budget and
report the training process's peak RSS; compare streaming and in-memory throughput on a table
that fits.

    python benchmarks/streaming_memory.py [--series 2000] [--rows 20000] [--features 16]

The large table (default 2,000 series x 20,000 rows x 16 float32 features, about 3 GB on disk)
is generated into a temporary folder, series by series, one row group per 4 series. Each run is
``seqtrain`` in a child process (so its peak RSS is its own), with ``data.memory_budget=512MiB``
and a short training (``trainer.max_steps``, limited validation and test batches).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_table(path: Path, series: int, rows: int, features: int) -> int:
    rng = np.random.default_rng(0)
    times = np.arange(rows, dtype="int64") * 60_000_000_000 + 1_600_000_000_000_000_000
    writer = None
    for first in range(0, series, 4):
        parts = []
        for s in range(first, min(first + 4, series)):
            walk = np.cumsum(rng.normal(0, 1, rows)).astype(np.float32)
            columns = {"time": pa.array(times.view("datetime64[ns]")),
                       "symbol": pa.array(np.full(rows, f"S{s:05d}"))}
            for j in range(features):
                columns[f"f{j}"] = pa.array(rng.normal(0, 1, rows).astype(np.float32))
            columns["close"] = pa.array(walk)
            parts.append(pa.table(columns))
        table = pa.concat_tables(parts)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=len(table))
    writer.close()
    return path.stat().st_size


def run(path: Path, folder: Path, streaming: str, steps: int) -> dict:
    out = folder / f"run-{streaming}-{time.time_ns()}"
    command = [sys.executable, "-m", "seqtrain.cli", "data=parquet", f"data.path={path}",
               "data.target=close", "data.group_col=symbol", "task=regression",
               f"data.streaming={streaming}", "data.memory_budget=512MiB", "data.seq_length=32",
               "model=tcn", f"trainer.max_steps={steps}", "trainer.limit_val_batches=20",
               "trainer.limit_test_batches=20", "early_stopping.patience=null",
               "progress_bar=false", f"hydra.run.dir={out}"]
    # a fresh launcher per run, so that RUSAGE_CHILDREN's peak is this run's alone
    launcher = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", launcher, *command], check=True, capture_output=True,
                          text=True)
    wall = time.perf_counter() - started
    peak_kib = int(done.stdout.split()[-1])
    metrics = json.loads((out / "metrics.json").read_text())
    return {"peak_rss_gib": peak_kib / 2**20, "wall_s": wall,
            "samples_per_s": metrics["train_samples_per_s"],
            "streaming": json.loads((out / "data_state.json").read_text()).get("streaming", False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        small = folder / "small.parquet"
        write_table(small, max(args.series // 20, 4), args.rows, args.features)
        print("| table | path | peak RSS (GiB) | train samples/s | wall (s) |\n|---|---|---:|---:|---:|")
        for mode in ("false", "true"):
            r = run(small, folder, mode, args.steps)
            path_name = "streaming" if r["streaming"] else "in memory"
            print(f"| {max(args.series // 20, 4)} series (fits) | {path_name} | {r['peak_rss_gib']:.2f} "
                  f"| {r['samples_per_s']:,.0f} | {r['wall_s']:.0f} |", flush=True)
        large = folder / "large.parquet"
        started = time.perf_counter()
        size = write_table(large, args.series, args.rows, args.features)
        print(f"<!-- large table: {size / 2**30:.2f} GiB on disk, written in "
              f"{time.perf_counter() - started:.0f} s -->", flush=True)
        r = run(large, folder, "auto", args.steps)
        print(f"| {args.series} series x {args.rows} rows ({size / 2**30:.1f} GiB on disk) | "
              f"{'streaming' if r['streaming'] else 'in memory'} (auto) | {r['peak_rss_gib']:.2f} | "
              f"{r['samples_per_s']:,.0f} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
