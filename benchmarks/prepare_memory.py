"""Preparing a table in memory: peak memory beside the final arrays, and time per million rows
beside pyarrow's own read.

    python benchmarks/prepare_memory.py [--series 100] [--rows 20000] [--features 16]

Writes a table of ``series x rows`` rows with ``features`` float32 columns (streaming_memory.py's
generator), then, each in a fresh process: pyarrow reading it whole, and seqtrain's ``read_table``
(read, decode, sort, split, fit the scaler on training rows, scale, index the windows; no torch
model, no Lightning). Peak is the process's resident high-water mark, as the kernel reports it
to the process that started it (a fresh launcher's ``RUSAGE_CHILDREN``: a process started
straight from this one would inherit this one's high-water mark); "runtime" is the process's
resident memory before reading (Python, NumPy, pyarrow, seqtrain's imports).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streaming_memory import write_table


def measure(path: str, what: str) -> dict:
    """In this process (a fresh one): ``what`` = read | prepare."""
    import pyarrow.parquet as pq
    from hydra import compose, initialize_config_module

    from seqtrain.data.memory import read_table

    runtime = resident_mib()
    start = time.perf_counter()
    if what == "read":
        table = pq.read_table(path)
        rows, final = table.num_rows, 0.0
    else:
        with initialize_config_module("seqtrain.conf", version_base="1.3"):
            cfg = compose("config", overrides=["data=parquet", f"data.path={path}", "data.target=close",
                                                "data.group_col=symbol", "task=regression"])
        data = read_table(cfg.data, "regression", path)
        rows = len(data.times)
        final = (sum(a.nbytes for a in (data.inputs, data.labels, data.times, data.series))
                 + sum(e.nbytes for e in data.ends.values())) / 2**20
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "runtime_mib": runtime, "final_mib": final}


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_fresh(path: Path, what: str) -> dict:
    """``measure`` in a fresh process, with its peak RSS from outside it."""
    launcher = ("import resource, subprocess, sys; out = subprocess.run(sys.argv[1:], check=True, "
                "capture_output=True, text=True).stdout; print(out.strip().splitlines()[-1]); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    command = [sys.executable, __file__, "--measure", str(path), what]
    done = subprocess.run([sys.executable, "-c", launcher, *command], capture_output=True, text=True,
                          check=True)
    result, peak_kib = done.stdout.strip().splitlines()[-2:]
    return {**json.loads(result), "peak_mib": int(peak_kib) / 1024}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.parquet"
        size = write_table(path, args.series, args.rows, args.features)
        runs = {what: run_fresh(path, what) for what in ("read", "prepare")}
    read, prep = runs["read"], runs["prepare"]
    millions = prep["rows"] / 1e6
    print(f"table: {args.series} series x {args.rows:,} rows x {args.features} features, "
          f"{size / 2**20:.0f} MiB on disk\n")
    print("| step | s per million rows | peak MiB | runtime MiB | final arrays MiB "
          "| peak / (final + runtime) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, run in (("pyarrow read_table", read), ("seqtrain prepare", prep)):
        peak, runtime, final = run["peak_mib"], run["runtime_mib"], run["final_mib"]
        final, ratio = (f"{final:.0f}", f"{peak / (final + runtime):.2f}") if final else ("-", "-")
        seconds = run["seconds"] / millions
        print(f"| {name} | {seconds:.2f} | {peak:.0f} | {runtime:.0f} | {final} | {ratio} |")


if __name__ == "__main__":
    main()
