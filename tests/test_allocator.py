"""glibc's malloc settled for training (seqtrain.engine.allocator): blocks a step frees stay with the
process, a user's own allocator settings are left alone, and nothing a run computes changes."""

import json
import os
import platform
import subprocess
import sys

import pandas as pd
import pytest

from seqtrain.engine import allocator
from tests.conftest import TINY_RUN

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="glibc's malloc only")

# 16 blocks of 1 MiB (above glibc's initial 128 KiB mmap threshold) allocated, then freed: where
# they came from (fresh mappings or the heap), and how much heap the process kept afterwards
BLOCKS = """
import ctypes, json, torch
from seqtrain.engine.allocator import settle_malloc
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
settled = settle_malloc()
mapped = libc.mallinfo2().hblkhd
blocks = [torch.ones(1 << 18) for _ in range(16)]
mapped = libc.mallinfo2().hblkhd - mapped
del blocks
print(json.dumps({"settled": settled, "mapped": mapped, "heap_kept": libc.mallinfo2().arena}))
"""


def _blocks(settle: str) -> dict:
    env = {**os.environ, allocator.ENV: settle}
    out = subprocess.run([sys.executable, "-c", BLOCKS], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@glibc
def test_settled_blocks_come_from_the_heap_and_stay_there_when_freed():
    default, settled = _blocks("0"), _blocks("1")
    assert default["settled"] == "default (SEQTRAIN_MALLOC=0)"
    assert default["mapped"] >= 16 << 20  # each block a fresh mapping, unmapped again when freed
    assert settled["settled"].startswith("glibc, mmap threshold 32 MiB")
    assert settled["mapped"] == 0
    assert settled["heap_kept"] >= 16 << 20  # not trimmed: the next step reuses it without faults


@pytest.mark.parametrize("env, why", [
    ({"SEQTRAIN_MALLOC": "0"}, "SEQTRAIN_MALLOC=0"),
    ({"MALLOC_TRIM_THRESHOLD_": "1048576"}, "malloc settings in the environment"),
    ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, "malloc settings in the environment"),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "another allocator preloaded"),
])
@glibc
def test_a_users_own_allocator_settings_are_left_alone(monkeypatch, env, why):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    allocator.settle_malloc.cache_clear()
    try:
        assert allocator.settle_malloc() == f"default ({why})"
    finally:
        allocator.settle_malloc.cache_clear()


@glibc
def test_a_settled_run_computes_what_a_default_one_does(tmp_path):
    """Seeded runs with and without the setting: the same losses, metrics and predictions, each
    run in its own process (the setting is the process's)."""
    runs = {}
    for settle in ("0", "1"):
        run_dir = tmp_path / f"malloc{settle}"
        env = {**os.environ, allocator.ENV: settle, "OMP_NUM_THREADS": "1"}  # beside the other worker
        subprocess.run([sys.executable, "-m", "seqtrain.cli", *TINY_RUN, "data.batch_size=128",
                        f"hydra.run.dir={run_dir}"], env=env, capture_output=True, check=True)
        runs[settle] = run_dir
    metrics = {s: json.loads((d / "metrics.json").read_text()) for s, d in runs.items()}
    assert metrics["0"]["malloc"] == "default (SEQTRAIN_MALLOC=0)"
    assert metrics["1"]["malloc"].startswith("glibc")
    for key in ("best_val", "test", "steps"):
        assert metrics["0"][key] == metrics["1"][key], key
    for name in ("steps.csv", "metrics.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(runs["0"] / name), pd.read_csv(runs["1"] / name))
    pd.testing.assert_frame_equal(pd.read_parquet(runs["0"] / "predictions.parquet"),
                                  pd.read_parquet(runs["1"] / "predictions.parquet"))
