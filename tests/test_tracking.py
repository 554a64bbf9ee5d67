"""Experiment tracking (the ``logger`` group): what a run logs can be read back from the store."""

import builtins
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TINY


def _client(store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{store}")


def test_mlflow_run_reads_back_through_the_client(run_cli, tmp_path):
    store = tmp_path / "mlflow.db"
    result = run_cli(*TINY, "plots=true", "logger=mlflow", f"logger.tracking_uri=sqlite:///{store}",
                     f"logger.artifact_location={tmp_path / 'artifacts'}", "trainer.log_every_n_steps=2")
    assert result.code == 0, result.err
    assert "Creating it" not in result.out + result.err  # MLflow's chatter stays out
    client = _client(store)
    experiment = client.get_experiment_by_name("seqtrain")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == result.run_dir.name
    assert run.data.tags["run_dir"] == str(result.run_dir)
    params = run.data.params  # the flat resolved config
    assert params["model.name"] == "lstm" and params["model.hidden_size"] == "16"
    assert params["data.seq_length"] == "16" and params["task"] == "classification"
    metrics = result.metrics()
    logged = run.data.metrics
    assert logged["test_acc"] == pytest.approx(metrics["test"]["test_acc"])
    assert logged["skill"] == pytest.approx(metrics["skill"]["skill"])
    for name, value in metrics["baseline_test"].items():
        assert logged[f"baseline.{name}"] == pytest.approx(value)
    run_id = run.info.run_id
    assert len(client.get_metric_history(run_id, "val_loss")) == 2  # one per epoch
    losses = client.get_metric_history(run_id, "train_loss_step")
    assert [m.step for m in losses] == [1, 3, 5, 7]  # every 2nd of 8 steps, as Lightning counts them
    assert [m.step for m in client.get_metric_history(run_id, "grad_norm_step")] == [1, 3, 5, 7]
    steps = pd.read_csv(result.run_dir / "steps.csv")  # the same values as the run folder's
    assert [m.value for m in losses] == pytest.approx(steps["loss"].iloc[[1, 3, 5, 7]].tolist())
    assert len(client.get_metric_history(run_id, "train_loss")) == 2  # the epoch mean
    assert len(client.get_metric_history(run_id, "lr-Adam/pg1")) == 4  # the scheduled rate too
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "config.yaml", "predictions.parquet", "plots", "checkpoints"} <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "plots")} >= {"plots/curves.png"}
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/best.ckpt"]
    saved = json.loads(Path(client.download_artifacts(run_id, "metrics.json", str(tmp_path))).read_text())
    assert saved == metrics


def test_a_multirun_is_one_experiment_with_a_run_per_job(run_cli, tmp_path):
    store = tmp_path / "mlflow.db"
    result = run_cli("-m", *TINY, "model.hidden_size=8,16", "logger=mlflow",
                     f"logger.tracking_uri=sqlite:///{store}",
                     f"logger.artifact_location={tmp_path / 'artifacts'}")
    assert result.code == 0, result.err
    client = _client(store)
    experiment = client.get_experiment_by_name(str(result.run_dir))  # named after the sweep
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.params["model.hidden_size"] for r in runs] == ["8", "16"]
    assert all(r.info.run_name.startswith(f"{i}: ") and f"model.hidden_size={h}" in r.info.run_name
               for i, (r, h) in enumerate(zip(runs, (8, 16), strict=True)))
    assert [r.data.tags["run_dir"] for r in runs] == [str(result.run_dir / "0"), str(result.run_dir / "1")]


def test_tensorboard_and_csv_loggers_write_into_the_run_folder(run_cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_cli(*TINY, "logger=tensorboard")
    assert result.code == 0, result.err
    events = EventAccumulator(str(result.run_dir / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"val_loss", "train_loss", "test_acc", "skill", "baseline.majority_acc"} <= tags
    assert len(events.Scalars("val_loss")) == 2

    result = run_cli(*TINY, "logger=csv")
    assert result.code == 0, result.err
    logged = pd.read_csv(result.run_dir / "csv_logs" / "metrics.csv")
    assert logged["val_loss"].notna().sum() == 2 and logged["test_acc"].notna().sum() == 1
    assert "model.hidden_size: 16" in (result.run_dir / "csv_logs" / "hparams.yaml").read_text()


def test_a_tracker_that_is_not_installed_is_one_line(run_cli, monkeypatch):
    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    result = run_cli(*TINY, "logger=mlflow")
    assert result.code == 2 and "Traceback" not in result.err
    assert "logger=mlflow needs mlflow, which is not installed: pip install 'seqtrain[mlflow]'" in \
        " ".join(result.err.split())
    assert not (result.run_dir / "checkpoints").exists()  # refused before anything ran


def test_an_unknown_logger_is_one_line(run_cli):
    result = run_cli(*TINY, "logger=wandb")
    assert result.code == 2 and "logger=wandb: unknown logger; choose one of csv, mlflow, none, tensorboard" \
        in " ".join(result.err.split())
