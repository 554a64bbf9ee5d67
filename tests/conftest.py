"""Shared helpers: run the real CLI entry point in-process, and make small Parquet tables."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from seqtrain import cli
from tests.helpers import make_table

# Machines differ: bf16 kernels exist on some CPUs only. The suite runs the "no native bf16"
# path on every machine (subprocesses inherit it); tests of the native path force it with a
# model whose kernels exist everywhere.
os.environ["SEQTRAIN_CPU_BF16"] = "0"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per test worker: two workers with two OpenMP threads each on two cores spin
    # against each other and run many times slower. The processes a test starts inherit it.
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Small enough for a few seconds per run on 2 CPU cores, large enough to exercise everything.
TINY_RUN = [
    "progress_bar=false",
    "plots=false",  # the slowest part of a tiny run; the tests of the plots turn them on
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "data.generator.length=400",
    "data.seq_length=16",
]
TINY_MODELS = {
    "lstm": ["model.hidden_size=16", "model.num_layers=1"],
    "gru": ["model.hidden_size=16", "model.num_layers=1"],
    "seq2seq_attention": ["model.hidden_size=16"],
    "tcn": ["model.num_channels=[8,8,8]"],
    "tft": ["model.hidden_size=8", "model.hidden_continuous_size=4", "model.attention_head_size=2"],
    "informer": ["model.d_model=16", "model.d_ff=32", "model.n_heads=2", "model.label_len=8"],
    "cnn_lstm": ["model.channels=[8]", "model.hidden_size=16"],
    "inception_time": ["model.nb_filters=4", "model.depth=3", "model.kernel_size=8", "model.bottleneck=4"],
    "nhits": ["model.hidden_size=16"],
    "patchtst": ["model.d_model=8", "model.n_heads=2", "model.d_ff=16", "model.num_layers=1",
                 "model.head_hidden=16"],
}
TINY = [*TINY_RUN, *TINY_MODELS["lstm"]]  # the default model


@dataclass
class CliResult:
    code: int
    out: str
    err: str
    run_dir: Path

    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())


@pytest.fixture
def run_cli(tmp_path, capsys, monkeypatch):
    """``run_cli(*overrides)`` runs ``seqtrain`` through ``cli.main`` into a fresh folder."""
    counter = iter(range(1000))

    def run(*args: str, run_dir: Path | None = None) -> CliResult:
        run_dir = run_dir or tmp_path / f"run{next(counter)}"
        folder = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
        monkeypatch.setattr(sys, "argv", ["seqtrain", *args, f"{folder}={run_dir}"])
        capsys.readouterr()
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err, run_dir)

    return run


def run_seqtrain(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    """``seqtrain ARGV`` (e.g. ``predict run=...``) through ``cli.main``: exit code and output."""
    monkeypatch.setattr(sys, "argv", ["seqtrain", *argv])
    capsys.readouterr()
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def bars(tmp_path) -> Path:
    """A two-series Parquet file like a user's bar table."""
    path = tmp_path / "bars.parquet"
    make_table(300, n_series=2).to_parquet(path, index=False)
    return path


# The longest modules first: the two workers then end together instead of one finishing a long
# test alone while the other has nothing left to take.
SLOW_FIRST = ("tests/test_learning.py", "tests/test_resume.py", "tests/test_ddp.py",
              "tests/test_parallel_folds.py", "tests/test_compile.py")


def pytest_collection_modifyitems(items):
    def place(item) -> int:  # sorting is stable: the other modules keep their order
        module = item.nodeid.split("::")[0]
        return SLOW_FIRST.index(module) if module in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=place)
