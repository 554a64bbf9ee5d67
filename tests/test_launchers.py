"""Parallel and cluster sweeps through Hydra's launchers: joblib, submitit (local and SLURM)."""

import json
import os
import shutil

import pandas as pd

from tests.conftest import TINY


def _jobs_finished(result, n):
    assert result.code == 0, result.err
    summary = pd.read_csv(result.run_dir / "summary.csv")
    assert summary["job"].tolist() == list(range(n)) and summary["test_acc"].notna().all()
    return summary


def test_joblib_runs_jobs_side_by_side_sharing_the_cores(run_cli):
    result = run_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY,
                     "model.hidden_size=8,16")
    _jobs_finished(result, 2)
    cores = len(os.sched_getaffinity(0))
    metrics = [json.loads((result.run_dir / job / "metrics.json").read_text()) for job in ("0", "1")]
    assert [m["threads"] for m in metrics] == [max(1, cores // 2)] * 2  # no oversubscribed cores
    assert metrics[0]["model"]["parameters"] < metrics[1]["model"]["parameters"]  # each its own point


def test_submitit_local_runs_each_job_as_its_own_process(run_cli):
    result = run_cli("-m", "hydra/launcher=submitit_local", *TINY, "model.hidden_size=8,16")
    _jobs_finished(result, 2)
    logs = list((result.run_dir / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # what submitit ran, one job each


def test_the_slurm_config_composes_and_without_slurm_is_one_line(run_cli):
    from hydra import compose, initialize_config_module

    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min, launcher.mem_gb) == \
        ("gpu", 1, 240, 32)
    if shutil.which("sbatch") is None:
        result = run_cli("-m", "hydra/launcher=slurm", *TINY)
        assert result.code == 2 and "Traceback" not in result.err
        assert "no SLURM on this machine (sbatch not found)" in " ".join(result.err.split())
        assert not result.run_dir.exists()
