"""GPU training throughput (samples/s): the prepared table kept on the GPU against a bare loop
that does the same, by precision, with and without CUDA graphs.

    python benchmarks/gpu_resident.py [--epochs 3] [--rows 20000] [--batch 128]
    python benchmarks/gpu_resident.py --device cpu   # a dry run of the same code on the CPU

For LSTM and TCN on demo data (``--rows`` rows per series, 3 series): a bare loop whose windows
live on the GPU (gathered there by index, Adam + OneCycle, clipping 1.0) against seqtrain with
``data.device_resident=true`` at 32, 16-mixed and bf16-mixed, seqtrain reading batches through
its DataLoader from host memory (``data.device_resident=false``), and seqtrain with CUDA graphs
(``trainer.compile=reduce-overhead``). seqtrain's figure is its own ``train_samples_per_s``
(training epochs only). Without a CUDA GPU it says so and measures nothing, unless ``--device
cpu`` asks for the dry run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from train_throughput import bare_loop

from seqtrain.cli import _quiet_libraries
from seqtrain.engine.allocator import settle_malloc
from seqtrain.run.train import train

VARIANTS = {  # column -> seqtrain overrides
    "seqtrain resident 32": ["data.device_resident=true", "trainer.precision=32"],
    "resident 16-mixed": ["data.device_resident=true", "trainer.precision=16-mixed"],
    "resident bf16-mixed": ["data.device_resident=true", "trainer.precision=bf16-mixed"],
    "DataLoader 32": ["data.device_resident=false", "trainer.precision=32"],
    "resident 32 + CUDA graphs": ["data.device_resident=true", "trainer.precision=32",
                                  "trainer.compile=reduce-overhead"],
}


def config(model: str, args, folder: str, overrides=()):
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        return compose("config", overrides=[
            f"model={model}", f"trainer.max_epochs={args.epochs}", f"trainer.accelerator={accelerator}",
            f"data.batch_size={args.batch}", f"data.generator.length={args.rows}", "progress_bar=false",
            "early_stopping.patience=null", f"data.path={folder}/demo.parquet", *overrides])


def seqtrain_rate(model: str, args, overrides) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder, "run")
        train(config(model, args, folder, overrides), run)
        metrics = json.loads((run / "metrics.json").read_text())
        what = f"resident={metrics.get('device_resident')}, compile={metrics.get('compile')}"
        return metrics["train_samples_per_s"], what


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per demo series (3 series)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: nothing measured (--device cpu runs the same code on the CPU)")
        return
    _quiet_libraries()
    settle_malloc()  # as seqtrain's training does, for every loop (benchmarks/allocator.py)
    name = (torch.cuda.get_device_name() if args.device == "cuda"
            else f"CPU, {torch.get_num_threads()} threads")
    print(f"device: {name}, torch {torch.__version__}, batch {args.batch}, {args.rows:,} rows x 3 series\n")
    print("| model | bare resident loop 32 | " + " | ".join(VARIANTS) + " | seqtrain resident 32 / bare |")
    print("|---|" + "---:|" * (len(VARIANTS) + 2))
    notes = []
    for model in ("lstm", "tcn"):
        with tempfile.TemporaryDirectory() as folder:
            bare = bare_loop(config(model, args, folder), args.epochs, args.device, args.batch)
        rates = []
        for column, overrides in VARIANTS.items():
            rate, what = seqtrain_rate(model, args, overrides)
            rates.append(rate)
            notes.append(f"{model}, {column}: {what}")
        print(f"| {model} | {bare:,.0f} | " + " | ".join(f"{r:,.0f}" for r in rates)
              + f" | {rates[0] / bare:.2f} |", flush=True)
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
