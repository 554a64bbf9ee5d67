"""Every model and task trains a few steps through the real CLI and writes the full run folder."""

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import TINY

RUN_FILES = [
    ".hydra/config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.csv",
    "metrics.json", "predictions.parquet", "plots/curves.png", "plots/predictions.png",
    "data_state.json", "train.log",
]


@pytest.mark.parametrize("model", ["lstm", "gru"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_each_model_and_task_writes_the_run_folder(run_cli, model, task):
    result = run_cli(f"model={model}", f"task={task}", *TINY)
    assert result.code == 0, result.err
    for name in RUN_FILES:
        assert (result.run_dir / name).is_file(), name

    metrics = result.metrics()
    assert metrics["epochs"] == 2 and metrics["model"]["name"] == model
    assert metrics["train_samples_per_s"] > 0 and metrics["wall_time_s"] > 0
    main = "test_acc" if task == "classification" else "test_mae"
    assert main in metrics["test"] and "val_loss" in metrics["best_val"]

    epochs = pd.read_csv(result.run_dir / "metrics.csv")
    assert epochs["epoch"].tolist() == [0, 1]
    assert {"train_loss", "val_loss", "lr"} <= set(epochs.columns)

    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    assert len(predictions) == metrics["windows"]["test"]
    assert {"time", "window_end", "symbol", "y_true", "y_pred"} <= set(predictions.columns)
    assert (predictions["time"] > predictions["window_end"]).all()
    if task == "classification":
        probs = predictions[["prob_0", "prob_1"]].sum(axis=1)
        assert probs.between(0.999, 1.001).all()

    resolved = yaml.safe_load((result.run_dir / ".hydra/config.yaml").read_text())
    assert resolved["model"]["name"] == model and resolved["task"] == task
    state = json.loads((result.run_dir / "data_state.json").read_text())
    assert state["inputs"] and len(state["scaler"]["mean"]) == len(state["inputs"])
    assert "seqtrain ·" in result.out  # the summary table


def test_multi_step_regression_writes_one_row_per_step(run_cli):
    result = run_cli("task=regression", "data.output_steps=3", "data.horizon=2", *TINY)
    assert result.code == 0, result.err
    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    assert sorted(predictions["step"].unique()) == [1, 2, 3]
    assert len(predictions) == 3 * result.metrics()["windows"]["test"]


def test_precision_16_runs_on_cpu_as_bf16_and_says_so_once(run_cli):
    result = run_cli("trainer.precision=16", *TINY)
    assert result.code == 0, result.err
    assert result.metrics()["precision"] == "bf16-mixed"
    said = (result.out + result.err).count("fp16 autocast is not supported on CPU")
    assert said == 1


def test_bidirectional_gru_and_optimizer_scheduler_choices(run_cli):
    result = run_cli("model=gru", "model.bidirectional=true", "optim=adamw", "scheduler=cosine",
                     "class_weights=true", "early_stopping.monitor=val_auroc", *TINY)
    assert result.code == 0, result.err
    assert result.metrics()["monitor"] == "val_auroc"


def test_max_steps_before_the_first_validation_still_reports(run_cli):
    result = run_cli("trainer.max_steps=2", "trainer.limit_train_batches=null", *TINY)
    assert result.code == 0, result.err
    metrics = result.metrics()
    assert metrics["steps"] == 2 and "val_loss" in metrics["best_val"]


def test_no_library_noise_in_normal_output(run_cli):
    result = run_cli(*TINY)
    output = result.out + result.err
    for noise in ("Tip:", "GPU available", "LOCAL_RANK", "Warning", "warn", "litlogger"):
        assert noise not in output, noise


def test_dataloader_workers(run_cli):
    result = run_cli("data.num_workers=2", *TINY)
    assert result.code == 0, result.err
    assert result.metrics()["windows"]["train"] > 0


def test_metrics_csv_keeps_columns_that_appear_after_the_first_epoch(run_cli):
    result = run_cli("trainer.check_val_every_n_epoch=2", *TINY)
    assert result.code == 0, result.err
    epochs = pd.read_csv(result.run_dir / "metrics.csv")
    assert len(epochs) == 2
    assert pd.isna(epochs.loc[0, "val_loss"]) and pd.notna(epochs.loc[1, "val_loss"])
