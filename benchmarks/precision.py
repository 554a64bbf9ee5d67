"""Training throughput (samples/s) by precision, for LSTM, TCN and Informer.

    python benchmarks/precision.py [--epochs 2]

Runs seqtrain's ``train`` on the demo data with ``trainer.precision`` 32, 16-mixed and
bf16-mixed. On a CPU, 16-mixed runs as bf16-mixed (fp16 autocast is GPU-only), so the CPU table
has two distinct columns; on a GPU (``--gpu``) all three are measured, with the GPU's name.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from seqtrain.cli import _quiet_libraries
from seqtrain.run.train import train


def samples_per_second(model: str, precision: str, epochs: int, gpu: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        with initialize_config_module("seqtrain.conf", version_base="1.3"):
            cfg = compose("config", overrides=[
                f"model={model}", f"trainer.precision={precision}", f"trainer.max_epochs={epochs}",
                "progress_bar=false", "early_stopping.patience=null",
                *(["trainer=gpu", "data.num_workers=2"] if gpu else [])])
        train(cfg, Path(folder) / "run")
        return json.loads((Path(folder) / "run" / "metrics.json").read_text())["train_samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    _quiet_libraries()
    device = torch.cuda.get_device_name() if args.gpu else f"CPU, {torch.get_num_threads()} threads"
    precisions = ("32", "16-mixed", "bf16-mixed") if args.gpu else ("32", "bf16-mixed")
    print(f"device: {device}, torch {torch.__version__}\n")
    print("| model | " + " | ".join(precisions) + " |\n|---|" + "---:|" * len(precisions))
    for model in ("lstm", "tcn", "informer"):
        rates = [samples_per_second(model, p, args.epochs, args.gpu) for p in precisions]
        print(f"| {model} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |", flush=True)


if __name__ == "__main__":
    main()
