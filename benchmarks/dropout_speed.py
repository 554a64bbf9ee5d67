"""Training with seqtrain's MatchedDropout against torch's own nn.Dropout (samples/s, CPU).

    python benchmarks/dropout_speed.py [--epochs 8] [--models tcn informer lstm ...]

The bare loop of train_throughput.py (demo windows, batch 128, Adam + OneCycle, clipping at
1.0) over two copies of the same network with the same weights: one as seqtrain builds it
(every ``nn.Dropout`` a ``MatchedDropout``), one with torch's ``nn.Dropout`` put back. Their
epochs alternate, so a shared machine's drift touches both alike; the speed-up is the median
of the epochs' ratios, the first epoch of each left out. Both draw the same masks (tested in
tests/test_dropout.py): only the time differs. On a CPU where torch draws dropout masks with
MKL (Intel's), MatchedDropout is torch's dropout and the speed-up is 1 by construction; the
first line says which this CPU is.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from statistics import median

import torch
from torch import nn
from train_throughput import BareLoop, config

from seqtrain.cli import _quiet_libraries
from seqtrain.engine.allocator import settle_malloc
from seqtrain.models.dropout import MatchedDropout, draws_masks_element_wise

#: name -> overrides: the TCN and LSTM as in train_throughput.py's workloads, and the Informer
WORKLOADS = {
    "tcn, L=50": ("tcn", ("data.seq_length=50",)),
    "informer": ("informer", ()),
    "lstm 2x128, L=50": ("lstm", ("model.hidden_size=128", "data.seq_length=50")),
    "tcn, L=32 (demo)": ("tcn", ()),
}


def torch_dropout(model: nn.Module) -> nn.Module:
    """``model`` with torch's nn.Dropout back in place of each MatchedDropout (a subclass with
    the same settings and no state of its own, so its class alone changes)."""
    for module in model.modules():
        if type(module) is MatchedDropout:
            module.__class__ = nn.Dropout
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS),
                        metavar="WORKLOAD", help="of: " + "; ".join(WORKLOADS))
    args = parser.parse_args()
    _quiet_libraries()
    settle_malloc()
    threads = torch.get_num_threads()
    print(f"machine: {platform.machine()}, {threads} torch threads, torch {torch.__version__}; "
          f"torch draws dropout masks element by element here: {draws_masks_element_wise()}\n")
    print("| workload | nn.Dropout samples/s | MatchedDropout samples/s | speed-up |")
    print("|---|---:|---:|---:|")
    for name in args.workloads:
        model, extra = WORKLOADS[name]
        with tempfile.TemporaryDirectory() as folder:
            ours = BareLoop(config(model, args.epochs, folder, extra), args.epochs)
            torchs = BareLoop(config(model, args.epochs, folder, extra), args.epochs)
            torch_dropout(torchs.model).load_state_dict(ours.model.state_dict())
            pairs = [(torchs.epoch(), ours.epoch()) for _ in range(args.epochs)][1:]
        windows = len(ours.x)
        rate = [windows / median(p[i] for p in pairs) for i in (0, 1)]
        speedup = median(t / o for t, o in pairs)
        print(f"| {name} | {rate[0]:,.0f} | {rate[1]:,.0f} | {speedup:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
