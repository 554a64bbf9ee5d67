"""End-to-end training throughput (samples/s): seqtrain against a bare PyTorch loop and a
minimal Lightning loop.

    python benchmarks/train_throughput.py [--epochs 5] [--repeats 3] [--workloads ...]

The workloads: an LSTM of 2 layers of 128 and the default TCN on windows of 50 rows, each for
classification (the demo's direction) and regression (the demo's y, MSE, RevIN where seqtrain's
defaults put it); and the demo's own defaults (an LSTM of 2 x 64 and the TCN on windows of 32
rows, classification), whose steps are the shortest, so the loop around them shows most.
All three loops train the same network (built by seqtrain's own ``build_module``, same seed) on
the same demo windows with batch 128, Adam + OneCycle and gradient clipping at 1.0, on the CPU,
with the same loss. The bare loop gathers pre-built windows and steps the optimizer, nothing
else; the minimal Lightning loop runs that same step as a LightningModule's training_step (no
metric, logger, checkpoint or progress bar): what any Lightning-based tool starts from.
seqtrain runs at its defaults, through its real ``train`` function: metrics, checkpoints, the
NaN guard, and the progress bar (drawn when this runs in a terminal), early stopping alone off so
that every run trains all its epochs; its seconds are its own clock's (``train_samples_per_s``:
training only, validation excluded).

Paired epochs: a shared machine's speed can drift by 10-20% over seconds, more than the
differences measured, so whole runs made a minute apart would compare the machine's moods.
Instead, at the end of each training epoch of the Lightning run and of the seqtrain run (their
clocks stopped), a bare loop of its own runs one epoch; each (epoch, bare epoch right after it)
pair gives a ratio, and the table shows the median and quartiles of those ratios over
``--repeats`` runs of ``--epochs`` epochs, the first epoch of each run left out (it warms caches
up for what runs next); seqtrain / Lightning divides the two medians. The samples/s columns are
medians of single epochs. All three run with glibc's malloc settled as seqtrain's training
settles it (seqtrain.engine.allocator), so the ratios compare loops, not allocators;
benchmarks/allocator.py measures the allocator setting itself.

A second table gives each loop's fixed cost per training step, in milliseconds: the same pairs
around a network too small to matter (a TCN of one level of two channels, no dropout) for 15
epochs, so the step is mostly what surrounds the network. A ratio on a real model follows from
it (bare step / (bare step + the loop's cost)).
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path
from statistics import median, quantiles
from unittest.mock import patch

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from seqtrain.cli import _quiet_libraries
from seqtrain.data.datamodule import SeqDataModule
from seqtrain.data.loading import load_data
from seqtrain.data.synthetic import write_parquet
from seqtrain.engine.allocator import settle_malloc
from seqtrain.engine.assemble import build_module
from seqtrain.engine.callbacks import Throughput
from seqtrain.run import train as training
from seqtrain.run.train import train

#: a network whose compute is negligible beside the loop around it
NEGLIGIBLE_NETWORK = ["model.num_channels=[2]", "model.dropout=0"]

#: name -> (model, task, overrides): the issue's workloads (windows of 50 rows, an LSTM of 2 x
#: 128, both tasks), then the demo's defaults (windows of 32, an LSTM of 2 x 64)
LSTM_2X128_L50 = ("model.hidden_size=128", "data.seq_length=50")
WORKLOADS = {
    "lstm 2x128, L=50, classification": ("lstm", "classification", LSTM_2X128_L50),
    "lstm 2x128, L=50, regression": ("lstm", "regression", LSTM_2X128_L50),
    "tcn, L=50, classification": ("tcn", "classification", ("data.seq_length=50",)),
    "tcn, L=50, regression": ("tcn", "regression", ("data.seq_length=50",)),
    "lstm 2x64, L=32 (demo), classification": ("lstm", "classification", ()),
    "tcn, L=32 (demo), classification": ("tcn", "classification", ()),
}


def config(model: str, epochs: int, folder: str, extra: tuple[str, ...] = (), task: str = "classification"):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        return compose("config", overrides=[f"model={model}", f"task={task}", f"trainer.max_epochs={epochs}",
                                            "early_stopping.patience=null",
                                            f"data.path={folder}/demo.parquet", *extra])


def demo_data(cfg):
    """The demo table prepared as seqtrain prepares it for ``cfg.task``, and every training
    window of it (inputs, labels)."""
    write_parquet(cfg.data.path, **OmegaConf.to_container(cfg.data.generator))
    cfg.data.target = "direction" if cfg.task == "classification" else "y"  # as train() picks
    data = load_data(cfg.data, cfg.task, cfg.data.path)
    batch = SeqDataModule(data, 128).sample_batch("train", size=10**9)
    return data, batch["x"], batch["y"]


def demo_model(cfg, data) -> torch.nn.Module:
    """The configured network for ``data``, seeded, as seqtrain builds it (RevIN included where
    seqtrain's defaults put it)."""
    torch.manual_seed(0)
    return build_module(cfg, data).model


def task_loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """seqtrain's default loss for ``task``: cross-entropy, or MSE of the point forecast. The
    task is a plain string, read from the config once: an attribute of an OmegaConf config costs
    tens of microseconds a read, which the bare loop has no reason to pay every step."""
    if task == "classification":
        return F.cross_entropy(out[:, 0], y)
    return F.mse_loss(out[..., 0], y)


def network_and_optimizer(cfg, data, x: torch.Tensor, epochs: int, batch: int = 128):
    model = demo_model(cfg, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    steps = epochs * -(-len(x) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.optim.lr, total_steps=steps)
    return model, optimizer, schedule


class BareLoop:
    """The bare loop: ``cfg``'s network, Adam + OneCycle over ``epochs`` epochs and clipping at
    1.0, stepping through a random permutation of the demo's pre-built windows (moved to
    ``device`` once and gathered there by index: on a GPU, the GPU-resident bare loop), one
    epoch at a time. Its permutation comes from its own generator, so a run it is interleaved
    with keeps its own random stream."""

    def __init__(self, cfg, epochs: int, device: str = "cpu", batch: int = 128):
        self.data, x, y = demo_data(cfg)
        self.task, self.device, self.batch = str(cfg.task), device, batch
        self.x, self.y = x.to(device), y.to(device)
        self.model, self.optimizer, self.schedule = network_and_optimizer(cfg, self.data, x, epochs, batch)
        self.model.to(device).train()
        self.order = torch.Generator(device=device).manual_seed(0)

    def epoch(self) -> float:
        """Seconds of one epoch."""
        synchronize(self.device)
        start = time.perf_counter()
        for index in torch.randperm(len(self.x), device=self.device, generator=self.order).split(self.batch):
            loss = task_loss(self.task, self.model(self.x[index]), self.y[index])
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.schedule.step()
        synchronize(self.device)
        return time.perf_counter() - start


def bare_loop(cfg, epochs: int, device: str = "cpu", batch: int = 128) -> float:
    """Samples/s of the bare loop over ``epochs`` epochs."""
    return bare_run(cfg, epochs, device, batch)[0]


def bare_run(cfg, epochs: int, device: str = "cpu", batch: int = 128) -> tuple[float, float]:
    """The bare loop's samples/s and the page faults the process took per step while it ran."""
    loop = BareLoop(cfg, epochs, device, batch)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds = sum(loop.epoch() for _ in range(epochs))
    steps = epochs * -(-len(loop.x) // batch)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return epochs * len(loop.x) / seconds, faults / steps


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

    def __init__(self, cfg, model, optimizer, schedule):
        super().__init__()
        self.task, self.model, self.optimizer, self.schedule = str(cfg.task), model, optimizer, schedule

    def training_step(self, batch, batch_idx):
        x, y = batch
        return task_loss(self.task, self.model(x), y)

    def configure_optimizers(self):
        return {"optimizer": self.optimizer, "lr_scheduler": {"scheduler": self.schedule, "interval": "step"}}


class Interleaved(L.Callback):
    """Pairs each training epoch of the run it is in with an epoch of a bare loop run right
    after it, while the run's clock is stopped: ``pairs`` of (the run's training seconds, the
    bare loop's seconds), measured a second apart, so a shared machine's drift touches both
    alike. The run's seconds come from ``seconds_so_far`` (seqtrain's own clock for seqtrain)."""

    def __init__(self, bare: BareLoop, seconds_so_far):
        self.bare, self.seconds_so_far = bare, seconds_so_far
        self.pairs: list[tuple[float, float]] = []
        self._seen = 0.0

    def on_train_epoch_end(self, trainer, module) -> None:
        total = self.seconds_so_far(trainer)
        ours, self._seen = total - self._seen, total
        self.pairs.append((ours, self.bare.epoch()))


class EpochClock(L.Callback):
    """Training seconds so far, epoch by epoch (the minimal Lightning loop's clock)."""

    def __init__(self):
        self.seconds = 0.0

    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.seconds += time.perf_counter() - self.start


def lightning_pairs(cfg, epochs: int) -> Interleaved:
    """Lightning's own loop around the bare loop's step (clipping 1.0, the scheduler stepped per
    step; no progress bar, logger or checkpoint) over the bare loop's windows, each epoch paired
    with a bare loop's."""
    bare, clock = BareLoop(cfg, epochs), EpochClock()
    pairs = Interleaved(bare, lambda trainer: clock.seconds)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                        callbacks=[clock, pairs], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, gradient_clip_val=1.0, num_sanity_val_steps=0)
    network = network_and_optimizer(cfg, bare.data, bare.x, epochs)
    trainer.fit(MinimalModule(cfg, *network), Batches(bare.x, bare.y))
    return pairs


def seqtrain_pairs(cfg, run: Path, epochs: int) -> Interleaved:
    """seqtrain's ``train`` at its defaults, each training epoch (its own clock, as in its
    ``train_samples_per_s``) paired with a bare loop's."""
    pairs = Interleaved(BareLoop(cfg, epochs), lambda trainer: next(
        c.seconds for c in trainer.callbacks if isinstance(c, Throughput)))

    def with_pairs(args, callbacks, *rest):  # the benchmark's callback beside seqtrain's own
        return make_trainer(args, [*callbacks, pairs], *rest)

    make_trainer = training.make_trainer
    with patch.object(training, "make_trainer", with_pairs):
        train(cfg, run)
    return pairs


def contest(model: str, epochs: int, extra: tuple[str, ...] = (),
            task: str = "classification") -> tuple[int, dict]:
    """Windows per epoch, and one run of the minimal Lightning loop and one of seqtrain, each
    epoch paired with a bare loop's: (loop's seconds, bare seconds) per epoch, the first epoch of
    each run left out (it warms caches up for whatever runs next)."""
    with tempfile.TemporaryDirectory() as folder:
        lightning = lightning_pairs(config(model, epochs, folder, extra, task), epochs)
        ours = seqtrain_pairs(config(model, epochs, folder, extra, task), Path(folder, "run"), epochs)
        return len(lightning.bare.x), {"lightning": lightning.pairs[1:], "seqtrain": ours.pairs[1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (the first is not counted)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop per workload")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS),
                        metavar="WORKLOAD", help="of: " + "; ".join(WORKLOADS))
    args = parser.parse_args()
    _quiet_libraries()
    settle_malloc()  # as seqtrain's training does, for all three loops (benchmarks/allocator.py)
    threads = torch.get_num_threads()
    print(f"machine: {platform.machine()}, {threads} torch threads, torch {torch.__version__}\n")
    header = ("| workload | bare step ms | bare loop | minimal Lightning | seqtrain | Lightning / bare "
              "| seqtrain / bare | seqtrain / bare, quartiles | seqtrain / Lightning | epochs |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name in args.workloads:
        model, task, extra = WORKLOADS[name]
        pairs = {"lightning": [], "seqtrain": []}
        for _ in range(args.repeats):
            windows, runs = contest(model, args.epochs, extra, task)
            for loop, run in runs.items():
                pairs[loop] += run
        bare = median(b for loop in pairs.values() for _, b in loop)
        rate = {loop: windows / median(t for t, _ in run) for loop, run in pairs.items()}
        ratio = {loop: [b / t for t, b in run] for loop, run in pairs.items()}
        ours = ratio["seqtrain"]
        low, _, high = quantiles(ours, n=4) if len(ours) > 1 else ours * 3
        rows.append(f"| {name} | {1000 * bare * 128 / windows:.1f} | {windows / bare:,.0f} "
                    f"| {rate['lightning']:,.0f} | {rate['seqtrain']:,.0f} "
                    f"| {median(ratio['lightning']):.2f} | {median(ours):.2f} | {low:.2f}-{high:.2f} "
                    f"| {median(ours) / median(ratio['lightning']):.2f} | {len(ours)} |")
        print(rows[-1], flush=True)
    print("\n" + header + "\n" + "\n".join(rows))

    # milliseconds per step around a negligible network; each loop's cost over the bare epoch after it
    over = {"lightning": [], "seqtrain": []}
    bare = []
    for _ in range(args.repeats):
        windows, runs = contest("tcn", 15, tuple(NEGLIGIBLE_NETWORK))
        steps = windows / 128
        for loop, run in runs.items():
            over[loop] += [1000 * (t - b) / steps for t, b in run]
            bare += [1000 * b / steps for _, b in run]
    lightning, ours = median(over["lightning"]), median(over["seqtrain"])
    print("\nfixed cost per training step, ms (TCN of one level of 2 channels, no dropout, 15 epochs; "
          "each epoch against the bare epoch right after it):\n")
    print("| bare loop step | minimal Lightning - bare | seqtrain - bare | seqtrain - minimal Lightning |")
    print("|---:|---:|---:|---:|")
    print(f"| {median(bare):.2f} | {lightning:.2f} | {ours:.2f} | {ours - lightning:.2f} |")


if __name__ == "__main__":
    main()
