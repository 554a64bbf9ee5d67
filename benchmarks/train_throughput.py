"""End-to-end training throughput (samples/s): seqtrain against a bare PyTorch loop.

    python benchmarks/train_throughput.py [--epochs 3] [--repeats 5]

Both train the same model (same config, built by the same registry) on the same demo windows
with batch 128, Adam + OneCycle and gradient clipping at 1.0, on the CPU. seqtrain runs at its
defaults: metrics, checkpoints, the NaN guard, and the progress bar (drawn when this runs in a
terminal). Its figure is its own ``train_samples_per_s`` (training epochs only, validation
excluded), measured through the real ``train`` function; the bare loop gathers pre-built
windows and steps the optimizer, nothing else. The two run back to back ``--repeats`` times;
the ratio is the median of the pairs' ratios, as a shared machine's speed drifts by more than
the difference measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from seqtrain.cli import _quiet_libraries
from seqtrain.data.datamodule import SeqDataModule
from seqtrain.data.loading import load_data
from seqtrain.data.synthetic import write_parquet
from seqtrain.models.registry import build_model
from seqtrain.training import train


def config(model: str, epochs: int, folder: str):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        return compose("config", overrides=[f"model={model}", f"trainer.max_epochs={epochs}",
                                            "early_stopping.patience=null",
                                            f"data.path={folder}/demo.parquet"])


def demo_windows(cfg) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every training window of the demo table (inputs, labels) and the number of classes."""
    write_parquet(cfg.data.path, **OmegaConf.to_container(cfg.data.generator))
    cfg.data.target = "direction"
    data = load_data(cfg.data, "classification", cfg.data.path)
    batch = SeqDataModule(data, 128).sample_batch("train", size=10**9)
    return batch["x"], batch["y"], len(data.classes)


def bare_loop(cfg, epochs: int) -> float:
    x, y, classes = demo_windows(cfg)
    args = {k: v for k, v in OmegaConf.to_container(cfg.model).items() if k != "name"}
    torch.manual_seed(0)
    model = build_model(cfg.model.name, args, x.shape[-1], classes, 1, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    steps = epochs * -(-len(x) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.optim.lr, total_steps=steps)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for index in torch.randperm(len(x)).split(128):
            loss = F.cross_entropy(model(x[index])[:, 0], y[index])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
    return epochs * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="pairs of runs (bare loop, seqtrain)")
    args = parser.parse_args()
    _quiet_libraries()
    threads = torch.get_num_threads()
    print(f"machine: {platform.machine()}, {threads} torch threads, torch {torch.__version__}\n")
    rows = []
    for model in ("lstm", "tcn"):
        pairs = []
        for _ in range(args.repeats):  # the two back to back, so each pair shares the machine's mood
            with tempfile.TemporaryDirectory() as folder:
                bare = bare_loop(config(model, args.epochs, folder), args.epochs)
                run = Path(folder, "run")
                train(config(model, args.epochs, folder), run)
                pairs.append((bare, json.loads((run / "metrics.json").read_text())["train_samples_per_s"]))
        ratios = sorted(ours / bare for bare, ours in pairs)
        rows.append(f"| {model} | {median(b for b, _ in pairs):,.0f} | {median(o for _, o in pairs):,.0f} "
                    f"| {median(ratios):.2f} | {ratios[0]:.2f}-{ratios[-1]:.2f} |")
    print("| model | bare loop samples/s | seqtrain samples/s | ratio (median of pairs) | ratio range |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
