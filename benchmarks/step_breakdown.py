"""Where a training step's time goes: seqtrain's step split into its parts, beside the bare
loop's (microseconds per step, CPU).

    python benchmarks/step_breakdown.py [--epochs 4] [--workloads ...]

Each workload trains seqtrain at its defaults (as benchmarks/train_throughput.py does: its
``train``, the progress bar drawn when this runs in a terminal) with a bare loop's epoch run
after each of its training epochs (train_throughput.py's pairs), while timers wrap the
functions each part of a step runs, in both loops alike: the network's forward, the loss, the
backward pass, zero_grad, the optimizer's update, the learning-rate schedule, and gradient
clipping (in seqtrain with the NaN guard's norm, which clipping reuses). seqtrain's other parts:
the windows gathered into a batch and the DataLoader around that, the move to the device, the
rest of its training step (metric update, readout), ``self.log`` (at an epoch's last batch),
the callbacks' hooks, and Lightning's loop (its epoch loop's step, optimizer closure and
precision wrapper, less every part timed inside them). The bare loop's remainder is its own
loop: the batch gathered by index, and the scheduler's and profiler's wrappers around the
optimizer step.

Times are exclusive (a part's time less the parts timed inside it) and per training step,
averaged over every epoch but each run's first; validation is not counted. The two loops run
one after the other, so their network parts differ by the machine's drift: the table is for
the parts only one loop has (benchmarks/train_throughput.py measures whole steps against each
other, in pairs). A timer costs about half a microsecond a call (measured and printed first),
some 20 calls a step. The progress bar draws from its own thread, so its cost shows in no part,
only as time added to whatever the main thread was doing.
"""

from __future__ import annotations

import argparse
import functools
import platform
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from unittest.mock import patch

import torch
import train_throughput  # its task_loss is timed where the bare loop looks it up
from lightning.pytorch import LightningModule
from lightning.pytorch.loops.optimization.automatic import Closure
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.trainer import call
from torch.utils.data.dataloader import _BaseDataLoaderIter
from train_throughput import NEGLIGIBLE_NETWORK, BareLoop, config, seqtrain_pairs

from seqtrain.cli import _quiet_libraries
from seqtrain.data.datamodule import WindowDataset
from seqtrain.engine.allocator import settle_malloc
from seqtrain.engine.callbacks import NonFiniteGuard
from seqtrain.engine.module import SeqModule
from seqtrain.models.instance_norm import InstanceNorm
from seqtrain.models.registry import model_class

#: name -> (model, task, overrides): train_throughput.py's, and its negligible network
WORKLOADS = {
    "tcn, L=50, classification": ("tcn", "classification", ("data.seq_length=50",)),
    "lstm 2x128, L=50, classification": ("lstm", "classification", train_throughput.LSTM_2X128_L50),
    "negligible network (tcn of one level of 2 channels)":
        ("tcn", "classification", tuple(NEGLIGIBLE_NETWORK)),
}

LIGHTNING = "Lightning's loop: epoch-loop step, closure, precision wrapper"
CLIPPING = "gradient norm and clipping (seqtrain: with the NaN guard)"
BARE_OWN = "bare loop's own loop: gather by index, wrappers"
#: the parts in the order printed
PARTS = ["batch: windows gathered", "batch: DataLoader around the gather", "batch: to the device",
         "network forward", "loss", "training step's rest: metric update, readout",
         "logging: self.log, at an epoch's last batch", "zero_grad", "backward", CLIPPING, "optimizer update",
         "learning-rate schedule", "callbacks' hooks", LIGHTNING, BARE_OWN]


class StepClock:
    """Exclusive seconds per (loop, part) within counted steps: a root (seqtrain's epoch-loop
    step, or a bare epoch) opens a step; timed calls outside a root are not counted."""

    def __init__(self):
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.steps: dict[str, int] = defaultdict(int)
        self.loop: str | None = None
        self._stack: list[float] = []

    def timed(self, function, part: str, root: str | None = None, steps=None):
        """``function`` timed as ``part``; a ``root`` counts ``steps(*args)`` steps of that loop
        (``None``: a call not to count, e.g. a run's first epoch)."""
        clock = self

        @functools.wraps(function)
        def timed(*args, **kwargs):
            if root is not None:
                count = steps(*args)
                if count is None or clock._stack:
                    return function(*args, **kwargs)
                clock.loop = root
            elif not clock._stack:
                return function(*args, **kwargs)
            clock._stack.append(0.0)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = clock._stack.pop()
                clock.seconds[clock.loop, part] += elapsed - inner
                if clock._stack:
                    clock._stack[-1] += elapsed
                else:
                    clock.steps[root] += count

        return timed

    def per_step(self, loop: str) -> dict[str, float]:
        """Microseconds per step of ``loop``, by part."""
        return {part: 1e6 * s / self.steps[loop] for (name, part), s in self.seconds.items() if name == loop}


def seqtrain_step_count(loop: _TrainingEpochLoop, *_):
    return 1 if loop.trainer.current_epoch >= 1 else None


def bare_step_count():
    """Steps in a bare epoch, its first epoch (of each BareLoop) not counted."""
    seen = set()

    def count(loop: BareLoop, *_):
        if id(loop) not in seen:
            seen.add(id(loop))
            return None
        return -(-len(loop.x) // loop.batch)

    return count


def timers(network: type) -> list[tuple[object, str, str, dict]]:
    """(owner, attribute, part, root settings) of every function timed."""
    seqtrain_root = {"root": "seqtrain", "steps": seqtrain_step_count}
    bare_root = {"root": "bare", "steps": bare_step_count()}
    return [
        (_TrainingEpochLoop, "advance", LIGHTNING, seqtrain_root),
        (BareLoop, "epoch", BARE_OWN, bare_root),
        (Closure, "closure", LIGHTNING, {}),
        (Precision, "_wrap_closure", LIGHTNING, {}),
        (WindowDataset, "__getitems__", "batch: windows gathered", {}),
        (_BaseDataLoaderIter, "__next__", "batch: DataLoader around the gather", {}),
        (Strategy, "batch_to_device", "batch: to the device", {}),
        (network, "forward", "network forward", {}),
        (InstanceNorm, "forward", "network forward", {}),  # RevIN around it, where the defaults put it
        (SeqModule, "loss", "loss", {}),
        (train_throughput, "task_loss", "loss", {}),
        (SeqModule, "training_step", "training step's rest: metric update, readout", {}),
        (LightningModule, "log", "logging: self.log, at an epoch's last batch", {}),
        (torch.optim.Optimizer, "zero_grad", "zero_grad", {}),
        (torch.Tensor, "backward", "backward", {}),
        (NonFiniteGuard, "on_before_optimizer_step", CLIPPING, {}),
        (SeqModule, "configure_gradient_clipping", CLIPPING, {}),
        (torch.nn.utils, "clip_grad_norm_", CLIPPING, {}),
        (torch.optim.Adam, "step", "optimizer update", {}),
        (torch.optim.lr_scheduler.LRScheduler, "step", "learning-rate schedule", {}),
        (call, "_call_callback_hooks", "callbacks' hooks", {}),
    ]


def breakdown(model: str, task: str, extra: tuple[str, ...], epochs: int) -> StepClock:
    clock = StepClock()
    with tempfile.TemporaryDirectory() as folder:
        cfg = config(model, epochs, folder, extra, task)
        network = model_class(cfg.model.name)
        with ExitStack() as stack:
            for owner, attribute, part, root in timers(network):
                original = getattr(owner, attribute)
                stack.enter_context(patch.object(owner, attribute, clock.timed(original, part, **root)))
            seqtrain_pairs(cfg, Path(folder, "run"), epochs)
    return clock


def timer_cost() -> float:
    """Microseconds one timed call adds, around a function that does nothing."""
    clock = StepClock()
    nothing = clock.timed(lambda: None, "nothing")
    root = clock.timed(lambda n: [nothing() for _ in range(n)], "root", root="calls", steps=lambda n: n)
    plain = lambda n: [(lambda: None)() for _ in range(n)]  # noqa: E731
    start = time.perf_counter()
    plain(100_000)
    bare = time.perf_counter() - start
    start = time.perf_counter()
    root(100_000)
    return 1e6 * (time.perf_counter() - start - bare) / 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is not counted)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS),
                        metavar="WORKLOAD", help="of: " + "; ".join(WORKLOADS))
    args = parser.parse_args()
    _quiet_libraries()
    settle_malloc()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; a timed call costs {timer_cost():.2f} us\n")
    for name in args.workloads:
        clock = breakdown(*WORKLOADS[name], args.epochs)
        bare, ours = clock.per_step("bare"), clock.per_step("seqtrain")
        lines = [f"{name}: microseconds per training step ({clock.steps['seqtrain']} seqtrain steps, "
                 f"{clock.steps['bare']} bare steps)\n",
                 "| part | bare loop | seqtrain | seqtrain - bare |", "|---|---:|---:|---:|"]
        for part in PARTS:
            b, s = bare.get(part, 0.0), ours.get(part, 0.0)
            lines.append(f"| {part} | {b:,.0f} | {s:,.0f} | {s - b:+,.0f} |")
        b, s = sum(bare.values()), sum(ours.values())
        lines.append(f"| **step** | **{b:,.0f}** | **{s:,.0f}** | **{s - b:+,.0f}** |")
        print("\n".join(lines) + "\n", flush=True)


if __name__ == "__main__":
    main()
