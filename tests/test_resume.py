"""A run killed mid-training (SIGTERM) saves last.ckpt, and `seqtrain resume=RUN` finishes it."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ARGS = ["trainer.max_epochs=6", "early_stopping.patience=null", "data.generator.length=800",
        "model.hidden_size=16", "progress_bar=false"]
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


def test_resume_refuses_what_it_cannot_continue(tmp_path, run_cli):
    finished = run_cli("trainer=debug", "progress_bar=false", "data.generator.length=300")
    assert finished.code == 0
    again = subprocess.run([SCRIPT, f"resume={finished.run_dir}"], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 2 and "already finished" in again.stderr
    nowhere = subprocess.run([SCRIPT, f"resume={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert nowhere.returncode == 2 and "not a seqtrain run folder" in nowhere.stderr
