"""eval.parallel: walk-forward folds (and cpcv splits) trained side by side, each in a process of
its own, with the results of one after another; a fold that fails, a kill or an interrupt is one
line, and leaves what was written whole."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import TINY
from tests.helpers import make_table

ROOT = Path(__file__).resolve().parent.parent
WALK = [*TINY, "eval=walk_forward", "eval.folds=2", "eval.test_size=0.1"]


def test_folds_side_by_side_give_the_results_of_one_after_another(run_cli):
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # what each of two side-by-side folds gets
    try:
        serial = run_cli(*WALK, "task=regression", "eval.parallel=1")
    finally:
        torch.set_num_threads(before)
    parallel = run_cli(*WALK, "task=regression", "eval.parallel=2")
    assert serial.code == 0 and parallel.code == 0, parallel.err
    one, two = serial.run_dir, parallel.run_dir
    pd.testing.assert_frame_equal(pd.read_parquet(one / "predictions.parquet"),
                                  pd.read_parquet(two / "predictions.parquet"))  # the pooled windows
    folds = [pd.read_csv(run / "folds.csv").drop(columns="wall_time_s") for run in (one, two)]
    pd.testing.assert_frame_equal(*folds)
    for fold in ("fold_00", "fold_01"):  # each fold its own run, seeded alike, on its share of the cores
        a, b = (json.loads((run / fold / "metrics.json").read_text()) for run in (one, two))
        assert (a["best_val"], a["test"], a["best_epoch"]) == (b["best_val"], b["test"], b["best_epoch"])
        assert b["threads"] == threads
        pd.testing.assert_frame_equal(pd.read_csv(one / fold / "metrics.csv"),
                                      pd.read_csv(two / fold / "metrics.csv"))
    pooled = [json.loads((run / "metrics.json").read_text()) for run in (one, two)]
    assert pooled[0]["pooled"] == pooled[1]["pooled"] and pooled[0]["best_val"] == pooled[1]["best_val"]
    assert not (two / ".parallel").exists()  # the jobs' files go once every fold finished


def test_a_failing_fold_and_folds_that_depend_on_each_other_are_one_line(run_cli, tmp_path):
    result = run_cli(*WALK, "eval.parallel=2", "eval.refit=warm")
    assert result.code == 2 and "Traceback" not in result.err
    assert "eval.parallel=2: with eval.refit=warm each fold starts from the previous fold's best weights" in \
        " ".join(result.err.split())
    assert "eval.parallel: 0" in " ".join(run_cli(*WALK, "eval.parallel=0").err.split())
    table = make_table(300, n_series=2)
    table.loc[table.index[-3:], "ret"] = float("nan")  # every fold refuses the table, in its own process
    table.to_parquet(tmp_path / "bars.parquet", index=False)
    own_table = [a for a in TINY if not a.startswith("data.generator")]
    result = run_cli(*own_table, "data=parquet", f"data.path={tmp_path / 'bars.parquet'}",
                     "data.target=close", "data.group_col=symbol", "data.features=[ret,vol,rsi]",
                     "data.seq_length=8", "task=regression", "eval=walk_forward", "eval.folds=3",
                     "eval.test_size=0.1", "eval.parallel=2")
    assert result.code == 2 and "Traceback" not in result.err
    said = " ".join(result.err.split())  # the first fold to fail says why
    assert re.search(r"error: fold_0[01]: data.features: column 'ret' has 3 NaN/inf value\(s\)", said)
    run = result.run_dir
    assert not (run / "metrics.json").exists() and not (run / "fold_02").exists()  # never started
    assert list((run / ".parallel").glob("fold_0*.error"))  # kept, beside the jobs that failed


def _worker(fold: str, run_dir: Path) -> int | None:
    """The process id of ``fold``'s worker for the run in ``run_dir``."""
    mark = str(run_dir / ".parallel" / f"{fold}.yaml").encode()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    return None


def test_sigterm_stops_the_folds_as_ctrl_c_does():
    from seqtrain.run.parallel import _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _sigterm_as_interrupt():  # a scheduler's time limit, ``kill``
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the folds' processes in /proc")
def test_a_killed_fold_is_one_line_stops_the_others_and_leaves_their_files_whole(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "seqtrain.cli", *WALK, "eval.folds=3", "eval.parallel=2",
               "trainer.max_epochs=100000", "early_stopping.patience=null", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                                       if p)}
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not all((run_dir / f / "checkpoints" / "last.ckpt").exists() for f in ("fold_00", "fold_01")):
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.poll() else ""
            time.sleep(0.5)
        os.kill(_worker("fold_01", run_dir), signal.SIGKILL)  # the out-of-memory killer, say
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 2 and "Traceback" not in err
    assert "error: fold_01: its process was killed by SIGKILL (out of memory?)" in " ".join(err.split())
    assert all(_worker(f, run_dir) is None for f in ("fold_00", "fold_01", "fold_02"))  # none left behind
    # fold_00, stopped as Ctrl-C stops it, saved a checkpoint that loads; no temporary is left but
    # maybe the killed fold's (removed when a run opens that folder again); no pooled result
    saved = torch.load(run_dir / "fold_00" / "checkpoints" / "last.ckpt", weights_only=True,
                       map_location="cpu")
    assert saved["global_step"] > 0 and pd.read_csv(run_dir / "fold_00" / "metrics.csv")["epoch"].size >= 1
    assert not [p for p in run_dir.rglob(".*.tmp") if run_dir / "fold_01" not in p.parents]
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "fold_02").exists()
