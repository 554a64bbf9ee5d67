"""End-to-end training throughput (samples/s): seqtrain against a bare PyTorch loop and a
minimal Lightning loop.

    python benchmarks/train_throughput.py [--epochs 3] [--repeats 5]

All three train the same model (same config, built by the same registry) on the same demo
windows with batch 128, Adam + OneCycle and gradient clipping at 1.0, on the CPU. The bare loop
gathers pre-built windows and steps the optimizer, nothing else; the minimal Lightning loop runs
that same step as a LightningModule's training_step (no metric, logger, checkpoint or progress
bar): what any Lightning-based tool starts from. seqtrain runs at its defaults: metrics,
checkpoints, the NaN guard, and the progress bar (drawn when this runs in a terminal); its
figure is its own ``train_samples_per_s`` (training epochs only, validation excluded), measured
through the real ``train`` function. The three run back to back ``--repeats`` times; figures
are medians, ratios the median of each round's ratio, as a shared machine's speed drifts by more
than the differences measured.
All three run with glibc's malloc settled as seqtrain's training settles it
(seqtrain.allocator), so the ratios compare loops, not allocators; benchmarks/allocator.py
measures the allocator setting itself.

A second table gives each loop's fixed cost per training step, in milliseconds: the same three
loops around a network too small to matter (a TCN of one level of two channels, no dropout) for
15 epochs, so the step is mostly what surrounds the network. A ratio on a real model follows
from it (bare step / (bare step + the loop's cost)), and it is steadier than the ratio itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path
from statistics import median

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from seqtrain.allocator import settle_malloc
from seqtrain.cli import _quiet_libraries
from seqtrain.data.datamodule import SeqDataModule
from seqtrain.data.loading import load_data
from seqtrain.data.synthetic import write_parquet
from seqtrain.models.registry import build_model
from seqtrain.training import train

#: a network whose compute is negligible beside the loop around it
NEGLIGIBLE_NETWORK = ["model.num_channels=[2]", "model.dropout=0"]


def config(model: str, epochs: int, folder: str, extra: tuple[str, ...] = ()):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        return compose("config", overrides=[f"model={model}", f"trainer.max_epochs={epochs}",
                                            "early_stopping.patience=null",
                                            f"data.path={folder}/demo.parquet", *extra])


def demo_windows(cfg) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every training window of the demo table (inputs, labels) and the number of classes."""
    write_parquet(cfg.data.path, **OmegaConf.to_container(cfg.data.generator))
    cfg.data.target = "direction"
    data = load_data(cfg.data, "classification", cfg.data.path)
    batch = SeqDataModule(data, 128).sample_batch("train", size=10**9)
    return batch["x"], batch["y"], len(data.classes)


def demo_model(cfg, x: torch.Tensor, classes: int) -> torch.nn.Module:
    """The configured network for windows like ``x``, seeded, as seqtrain's registry builds it."""
    args = {k: v for k, v in OmegaConf.to_container(cfg.model).items() if k != "name"}
    torch.manual_seed(0)
    return build_model(cfg.model.name, args, x.shape[-1], classes, 1, 0, seq_length=x.shape[1])


def network_and_optimizer(cfg, x: torch.Tensor, classes: int, epochs: int, batch: int = 128):
    model = demo_model(cfg, x, classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    steps = epochs * -(-len(x) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.optim.lr, total_steps=steps)
    return model, optimizer, schedule


def bare_loop(cfg, epochs: int, device: str = "cpu", batch: int = 128) -> float:
    """Samples/s of the bare loop; on ``device`` the windows are moved there once and each batch
    is gathered there by index (the GPU-resident bare loop)."""
    return bare_run(cfg, epochs, device, batch)[0]


def bare_run(cfg, epochs: int, device: str = "cpu", batch: int = 128) -> tuple[float, float]:
    """The bare loop's samples/s and the page faults the process took per step while it ran."""
    x, y, classes = demo_windows(cfg)
    x, y = x.to(device), y.to(device)
    model, optimizer, schedule = network_and_optimizer(cfg, x, classes, epochs, batch)
    model.to(device).train()
    synchronize(device)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(epochs):
        for index in torch.randperm(len(x), device=device).split(batch):
            loss = F.cross_entropy(model(x[index])[:, 0], y[index])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
    synchronize(device)
    seconds = time.perf_counter() - start
    steps = epochs * -(-len(x) // batch)
    return epochs * len(x) / seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps


def synchronize(device: str) -> None:
    """Wait for a GPU's queued work, so the clock reads what it did."""
    if device == "cuda":
        torch.cuda.synchronize()


class Batches:
    """The bare loop's batches (a random permutation, gathered from the windows) as an iterable."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return -(-len(self.x) // 128)

    def __iter__(self):
        return ((self.x[i], self.y[i]) for i in torch.randperm(len(self.x)).split(128))


class MinimalModule(L.LightningModule):
    """The least a Lightning user writes: the loss in training_step, no metric, no logging."""

    def __init__(self, model, optimizer, schedule):
        super().__init__()
        self.model, self.optimizer, self.schedule = model, optimizer, schedule

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.model(x)[:, 0], y)

    def configure_optimizers(self):
        return {"optimizer": self.optimizer, "lr_scheduler": {"scheduler": self.schedule, "interval": "step"}}


class EpochClock(L.Callback):
    def __init__(self):
        self.seconds = 0.0

    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.seconds += time.perf_counter() - self.start


def lightning_loop(cfg, epochs: int) -> float:
    """Lightning's own loop around the bare loop's step (clipping 1.0, the scheduler stepped per
    step; no progress bar, logger or checkpoint): the floor any Lightning-based tool starts from."""
    x, y, classes = demo_windows(cfg)
    clock = EpochClock()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, callbacks=[clock],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        gradient_clip_val=1.0, num_sanity_val_steps=0)
    trainer.fit(MinimalModule(*network_and_optimizer(cfg, x, classes, epochs)), Batches(x, y))
    return epochs * len(x) / clock.seconds


def contest(model: str, epochs: int, extra: tuple[str, ...] = ()) -> tuple[float, float, float]:
    """Samples/s of the bare loop, the minimal Lightning loop and seqtrain, back to back."""
    with tempfile.TemporaryDirectory() as folder:
        bare = bare_loop(config(model, epochs, folder, extra), epochs)
        lightning = lightning_loop(config(model, epochs, folder, extra), epochs)
        run = Path(folder, "run")
        train(config(model, epochs, folder, extra), run)
        return bare, lightning, json.loads((run / "metrics.json").read_text())["train_samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of runs (bare, Lightning, seqtrain)")
    args = parser.parse_args()
    _quiet_libraries()
    settle_malloc()  # as seqtrain's training does, for all three loops (benchmarks/allocator.py)
    threads = torch.get_num_threads()
    print(f"machine: {platform.machine()}, {threads} torch threads, torch {torch.__version__}\n")
    rows = []
    for model in ("lstm", "tcn"):
        runs = []
        for _ in range(args.repeats):  # back to back, so each triple shares the machine's mood
            runs.append(contest(model, args.epochs))
        bare, lightning, ours = (median(r[i] for r in runs) for i in range(3))
        ratios = sorted(r[2] / r[0] for r in runs)
        floor = median(r[1] / r[0] for r in runs)
        rows.append(f"| {model} | {bare:,.0f} | {lightning:,.0f} | {ours:,.0f} | {floor:.2f} "
                    f"| {median(ratios):.2f} | {ratios[0]:.2f}-{ratios[-1]:.2f} |")
    print("| model | bare loop | minimal Lightning | seqtrain | Lightning / bare | seqtrain / bare "
          "| seqtrain / bare, range |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))

    # milliseconds per step around a negligible network; each loop's cost over the bare one
    steps = [[1000 * 128 / rate for rate in contest("tcn", 15, tuple(NEGLIGIBLE_NETWORK))]
             for _ in range(args.repeats)]
    bare = median(r[0] for r in steps)
    over = [median(r[i] - r[j] for r in steps) for i, j in ((1, 0), (2, 0), (2, 1))]
    print("\nfixed cost per training step, ms (TCN of one level of 2 channels, no dropout, 15 epochs):\n")
    print("| bare loop step | minimal Lightning - bare | seqtrain - bare | seqtrain - minimal Lightning |")
    print("|---:|---:|---:|---:|")
    print(f"| {bare:.2f} | " + " | ".join(f"{ms:.2f}" for ms in over) + " |")


if __name__ == "__main__":
    main()
