"""Prediction throughput (windows/s) of ``seqtrain predict``, in memory and streamed, beside the
same model's training throughput.

    python benchmarks/predict_throughput.py [--series 20] [--length 20000] [--models lstm tcn]

A demo-shaped table (``--series`` × ``--length`` rows) is written to Parquet in row groups of
65,536 rows; each model trains briefly on it (its ``train_samples_per_s``, validation
excluded, is the training figure), then predicts every window of the whole table from the run
folder (best checkpoint, batch 1,024, CPU): once read whole (in memory), once row group by row
group (streaming). Each prediction figure is the best of ``--repeats`` runs and counts the
Parquet read, windowing, the network and the Parquet write.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from seqtrain import train
from seqtrain.cli import _quiet_libraries
from seqtrain.data.synthetic import make_table
from seqtrain.run.predict import Predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--length", type=int, default=20_000)
    parser.add_argument("--models", nargs="+", default=["lstm", "tcn"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    _quiet_libraries()
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; table {args.series} series x {args.length} rows")
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "table.parquet"
        pq.write_table(pa.Table.from_pandas(
            make_table(n_series=args.series, length=args.length), preserve_index=False),
            table, row_group_size=65_536)
        print("| model | train samples/s | predict in memory windows/s | predict streaming windows/s |")
        print("|---|---:|---:|---:|")
        for model in args.models:
            run = train([f"model={model}", "data=parquet", f"data.path={table}", "data.target=direction",
                         "data.group_col=symbol", "trainer.max_epochs=1", "trainer.limit_train_batches=200",
                         "trainer.limit_val_batches=20", "trainer.limit_test_batches=5",
                         "progress_bar=false", "data.leakage_audit=off"], run_dir=Path(folder) / model)
            predictor = Predictor.from_run(run.path, device="cpu")
            rates = {}
            for streaming in (False, True):
                best = 0.0
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    out = Path(folder) / "out.parquet"
                    rows = predictor.predict_path(str(table), out, streaming=streaming, overwrite=True)
                    best = max(best, rows / (time.perf_counter() - start))
                rates[streaming] = best
            trained = run.metrics["train_samples_per_s"]
            print(f"| {model} | {trained:,.0f} | {rates[False]:,.0f} | {rates[True]:,.0f} |")
            print(json.dumps({"model": model, "train": trained, "memory": rates[False],
                              "streaming": rates[True]}), flush=True)


if __name__ == "__main__":
    main()
