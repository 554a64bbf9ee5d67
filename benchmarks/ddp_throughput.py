"""Training throughput (samples/s) with DDP: 1 process against 2 on one machine, LSTM and TCN.

    python benchmarks/ddp_throughput.py [--epochs 3] [--gpu]

Runs seqtrain's ``train`` on the demo data (20,000 rows), once with one process and once with
``trainer=ddp trainer.devices=2`` (gloo on CPU: each process gets half the cores; nccl with
``--gpu``, one GPU each). Throughput is every rank's training samples over the slowest rank's
training time; the table also shows the wall time of the whole run (start-up, data, test and
report included) and the test metric, to show the two runs learn alike.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from seqtrain.cli import _quiet_libraries
from seqtrain.run.train import train


def run(model: str, devices: int, epochs: int, gpu: bool) -> dict:
    overrides = [f"model={model}", f"trainer.max_epochs={epochs}", "progress_bar=false",
                 "early_stopping.patience=null", "data.generator.length=20000",
                 *(["trainer=gpu"] if gpu else [])]
    if devices > 1:
        overrides += ["trainer.strategy=ddp", f"trainer.devices={devices}"]
    with tempfile.TemporaryDirectory() as folder:
        with initialize_config_module("seqtrain.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        train(cfg, Path(folder) / "run", quiet=True)
        return json.loads((Path(folder) / "run" / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    _quiet_libraries()
    cores = len(os.sched_getaffinity(0))
    device = torch.cuda.get_device_name() if args.gpu else f"CPU, {cores} cores"
    print(f"device: {device}, torch {torch.__version__}, {args.epochs} epochs of the demo data "
          "(20,000 rows, batch 128 per process)\n")
    print("| model | processes | train samples/s | speed-up | optimizer steps | wall s | test acc |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model in ("lstm", "tcn"):
        single = None
        for devices in (1, 2):
            metrics = run(model, devices, args.epochs, args.gpu)
            rate = metrics["train_samples_per_s"]
            single = single or rate
            print(f"| {model} | {devices} | {rate:,.0f} | {rate / single:.2f}x | {metrics['steps']} | "
                  f"{metrics['wall_time_s']:.1f} | {metrics['test']['test_acc']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
