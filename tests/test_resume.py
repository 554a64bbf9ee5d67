"""A run killed mid-training (SIGTERM, or kill -9) continues with `seqtrain resume=RUN`: the same
state, the same random stream, files that agree; extended runs follow their new schedule."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seqtrain import cli
from tests.conftest import run_seqtrain

ARGS = ["trainer.max_epochs=6", "early_stopping.patience=null", "data.generator.length=800", "plots=false",
        "model.hidden_size=16", "progress_bar=false", "plots=false"]
SCRIPT = str(Path(sys.executable).with_name("seqtrain"))


def test_sigterm_then_resume_finishes_the_same_run(tmp_path, run_cli):
    run_dir = tmp_path / "run"
    process = subprocess.Popen([SCRIPT, *ARGS, f"hydra.run.dir={run_dir}"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    metrics_csv = run_dir / "metrics.csv"
    deadline = time.time() + 120
    def epochs_done() -> int:
        return len(metrics_csv.read_text().splitlines()) - 1 if metrics_csv.exists() else 0

    while time.time() < deadline and epochs_done() < 1:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert "interrupted at step" in err and "resume=" in " ".join(err.split())
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] > 0
    assert not (run_dir / "metrics.json").exists()
    assert not list(run_dir.rglob("*.tmp"))  # nothing half-written
    done_before = pd.read_csv(metrics_csv)["epoch"].tolist()

    resumed = subprocess.run([SCRIPT, f"resume={run_dir}"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    epochs = pd.read_csv(metrics_csv)["epoch"].tolist()
    assert epochs == [0, 1, 2, 3, 4, 5] and epochs[: len(done_before)] == done_before

    uninterrupted = run_cli(*ARGS)
    assert uninterrupted.code == 0, uninterrupted.err
    finished = pd.read_json(run_dir / "metrics.json", typ="series")
    assert finished["epochs"] == uninterrupted.metrics()["epochs"] == 6
    assert finished["steps"] == uninterrupted.metrics()["steps"]


def test_resume_refuses_what_it_cannot_continue(tmp_path, run_cli, monkeypatch, capsys):
    finished = run_cli("trainer=debug", "progress_bar=false", "plots=false", "data.generator.length=300")
    assert finished.code == 0
    code, said = run_seqtrain(monkeypatch, capsys, f"resume={finished.run_dir}")
    assert code == 2 and "already finished" in said
    code, said = run_seqtrain(monkeypatch, capsys, f"resume={tmp_path}")
    assert code == 2 and "not a seqtrain run folder" in said


def _finished_then_reopened(run_cli, *args):
    """A finished run whose metrics.json is removed: what a kill during testing leaves."""
    first = run_cli(*args)
    assert first.code == 0, first.err
    (first.run_dir / "metrics.json").unlink()
    return first.run_dir


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine", "plateau", "none"])
def test_extending_a_run_follows_the_schedule_of_its_new_length(run_cli, capsys, scheduler):
    args = [f"scheduler={scheduler}", "trainer.max_epochs=2", "early_stopping.patience=null",
            "data.generator.length=400", "model.hidden_size=16", "progress_bar=false", "plots=false"]
    run_dir = _finished_then_reopened(run_cli, *args)
    before = pd.read_csv(run_dir / "steps.csv")
    cli.resume(str(run_dir), ["trainer.max_epochs=4"])
    steps = pd.read_csv(run_dir / "steps.csv")
    assert pd.read_csv(run_dir / "metrics.csv")["epoch"].tolist() == [0, 1, 2, 3]
    assert steps["step"].tolist() == list(range(1, 2 * len(before) + 1))
    assert steps["lr"].head(len(before)).tolist() == before["lr"].tolist()  # the past is kept
    planned = run_cli(*args[:1], "trainer.max_epochs=4", *args[2:])  # a run planned for 4 epochs
    resumed_tail = steps["lr"].iloc[len(before) + 1:].to_numpy()
    planned_tail = pd.read_csv(planned.run_dir / "steps.csv")["lr"].iloc[len(before) + 1:].to_numpy()
    np.testing.assert_allclose(resumed_tail, planned_tail, rtol=1e-6)


def test_resume_checks_its_overrides(run_cli, capsys):
    run_dir = _finished_then_reopened(run_cli, "trainer=debug", "progress_bar=false", "plots=false",
                                      "data.generator.length=300")
    for overrides, expected in [
        (["model=gru"], "would change what the checkpoint holds"),
        (["data.seq_lenght=8"], "data.seq_lenght: no such config key"),
        (["data.seq_length=8"], "would change what the checkpoint holds"),
        (["task=regression"], "would change what the checkpoint holds"),
    ]:
        with pytest.raises(SystemExit) as stop:
            cli.resume(str(run_dir), overrides)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert expected in " ".join(err.split()) and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 or "error:" in err.splitlines()[0]
    assert not (run_dir / "metrics.json").exists()  # nothing was run


def test_resume_with_fewer_epochs_than_it_has_trained_is_one_line(run_cli, capsys):
    run_dir = _finished_then_reopened(run_cli, "trainer=debug", "trainer.max_epochs=3", "progress_bar=false",
                                      "plots=false", "data.generator.length=300")
    checkpoint = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    with pytest.raises(SystemExit) as stop:
        cli.resume(str(run_dir), ["trainer.max_epochs=1"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err, err
    assert "has trained past trainer.max_epochs=1" in " ".join(err.split())
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == checkpoint  # nothing lost


def test_hard_kill_then_resume_equals_an_uninterrupted_run(tmp_path):
    """kill -9 after an epoch's row reached metrics.csv (the checkpoint may or may not have been
    written): the resumed run's files agree with each other and with a run never interrupted,
    to the last digit, since the random stream continues where it stopped."""
    args = ["trainer.max_epochs=4", "early_stopping.patience=null", "data.generator.length=1500",
            "model.hidden_size=16", "progress_bar=false", "scheduler=cosine", "plots=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    process = subprocess.Popen([SCRIPT, *args, f"hydra.run.dir={killed}"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics_csv = killed / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (
            metrics_csv.exists() and len(metrics_csv.read_text().splitlines()) >= 3):
        time.sleep(0.005)
    process.kill()
    process.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"
    resumed = subprocess.run([SCRIPT, f"resume={killed}"], env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    subprocess.run([SCRIPT, *args, f"hydra.run.dir={clean}"], env=env, capture_output=True, timeout=300,
                   check=True)

    rows = pd.read_csv(metrics_csv)
    assert rows["epoch"].tolist() == [0, 1, 2, 3] and rows.notna().all().all()
    summary = json.loads((killed / "metrics.json").read_text())
    best = int(rows["val_loss"].idxmin())
    assert summary["best_epoch"] == best
    assert summary["best_val"]["val_loss"] == pytest.approx(rows["val_loss"][best])
    best_ckpt = torch.load(killed / "checkpoints" / "best.ckpt", weights_only=True)
    assert best_ckpt["global_step"] == rows["step"][best]
    pd.testing.assert_frame_equal(rows, pd.read_csv(clean / "metrics.csv"))
    assert summary["test"] == json.loads((clean / "metrics.json").read_text())["test"]
