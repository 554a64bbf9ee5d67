"""Every model and task trains a few steps through the real CLI and writes the full run folder."""

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import TINY, TINY_MODELS, TINY_RUN
from tests.test_predict import assert_predict_reproduces_the_run

RUN_FILES = [
    ".hydra/config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.csv",
    "metrics.json", "predictions.parquet", "plots/curves.png", "plots/predictions.png",
    "data_state.json", "train.log",
]


WITH_ATTENTION = {"seq2seq_attention", "tft", "informer", "patchtst"}


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_each_model_and_task_writes_the_run_folder(run_cli, model, task, tmp_path):
    result = run_cli(f"model={model}", f"task={task}", *TINY_RUN, *TINY_MODELS[model], "plots=true")
    assert result.code == 0, result.err
    for name in RUN_FILES:
        assert (result.run_dir / name).is_file(), name
    assert (result.run_dir / "plots" / "attention.png").is_file() == (model in WITH_ATTENTION)
    assert (result.run_dir / "plots" / "variable_importance.png").is_file() == (model == "tft")

    metrics = result.metrics()
    assert metrics["epochs"] == 2 and metrics["model"]["name"] == model
    assert metrics["model"]["parameters"] > 0
    assert metrics["train_samples_per_s"] > 0 and metrics["wall_time_s"] > 0
    main = "test_acc" if task == "classification" else "test_mae"
    assert main in metrics["test"] and "val_loss" in metrics["best_val"]

    epochs = pd.read_csv(result.run_dir / "metrics.csv")
    assert epochs["epoch"].tolist() == [0, 1]
    assert {"train_loss", "val_loss", "lr"} <= set(epochs.columns)

    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    assert len(predictions) == metrics["windows"]["test"]
    if model == "tft" and task == "regression":  # quantile loss by default: its quantiles are saved
        assert {"q0.1", "q0.5", "q0.9"} <= set(predictions.columns)
        assert (predictions["q0.5"] == predictions["y_pred"]).all()
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
    assert_predict_reproduces_the_run(result.run_dir, tmp_path)


def test_multi_step_regression_writes_one_row_per_step(run_cli):
    result = run_cli("task=regression", "data.output_steps=3", "data.horizon=2", *TINY)
    assert result.code == 0, result.err
    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    assert sorted(predictions["step"].unique()) == [1, 2, 3]
    assert len(predictions) == 3 * result.metrics()["windows"]["test"]


@pytest.mark.parametrize("model", ["lstm", "seq2seq_attention", "tft"])
def test_precision_16_on_a_cpu_without_native_bf16_trains_in_float32_and_says_so_once(run_cli, model):
    # conftest forces the "no native bf16" path (as on AVX2-only CPUs, which lack bf16 LSTM kernels)
    result = run_cli("trainer.precision=16", f"model={model}", *TINY_RUN, *TINY_MODELS[model])
    assert result.code == 0, result.err
    assert result.metrics()["precision"] == "32-true"
    assert result.metrics()["precision_requested"] == "16"
    assert " ".join((result.out + result.err).split()).count("no native bf16") == 1


def test_precision_16_on_a_cpu_with_native_bf16_runs_bf16_and_says_so_once(run_cli, monkeypatch):
    monkeypatch.setenv("SEQTRAIN_CPU_BF16", "1")  # TCN's kernels exist in bf16 on every x86-64 CPU
    result = run_cli("trainer.precision=16", "model=tcn", *TINY_RUN, *TINY_MODELS["tcn"])
    assert result.code == 0, result.err
    assert result.metrics()["precision"] == "bf16-mixed"
    assert " ".join((result.out + result.err).split()).count("fp16 autocast is not supported on CPU") == 1


def test_bidirectional_gru_and_optimizer_scheduler_choices(run_cli):
    result = run_cli("model=gru", "model.bidirectional=true", "optim=adamw", "scheduler=cosine",
                     "class_weights=true", "early_stopping.monitor=val_auroc", *TINY)
    assert result.code == 0, result.err
    assert result.metrics()["monitor"] == "val_auroc"


def test_plots_false_writes_every_number_and_no_picture(run_cli):
    result = run_cli(*TINY)  # TINY turns the plots off
    assert result.code == 0, result.err
    assert not (result.run_dir / "plots").exists()
    for name in ("metrics.json", "predictions.parquet", "metrics.csv", "checkpoints/best.ckpt"):
        assert (result.run_dir / name).is_file(), name
    for bad in ("plots=flase", "progress_bar=1"):
        refused = run_cli(*TINY, bad)
        key = bad.split("=")[0]
        assert refused.code != 0 and f"{key}: " in refused.err and "true or false" in refused.err


def test_max_steps_before_the_first_validation_still_reports(run_cli):
    result = run_cli("trainer.max_steps=2", "trainer.limit_train_batches=null", *TINY)
    assert result.code == 0, result.err
    metrics = result.metrics()
    assert metrics["steps"] == 2 and "val_loss" in metrics["best_val"]


@pytest.mark.parametrize("model,extra", [("lstm", []), ("tft", ["data.streaming=true"])])
def test_no_library_noise_in_normal_output(tmp_path, model, extra):
    """Through the real console script, so warnings printed by libraries are seen too."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("seqtrain")
    args = [f"model={model}", *TINY_RUN, *TINY_MODELS[model], *extra, f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    for noise in ("Tip:", "GPU available", "LOCAL_RANK", "Warning", "warn", "litlogger", "deprecated"):
        assert noise not in output, (noise, output)


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


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_multi_step_with_known_future_and_calendar_columns(run_cli, model, tmp_path):
    result = run_cli(f"model={model}", "task=regression", "data.output_steps=3", "data.time_features=true",
                     "data.known_future=[cycle_quad]", *TINY_RUN, *TINY_MODELS[model])
    assert result.code == 0, result.err
    state = json.loads((result.run_dir / "data_state.json").read_text())
    # 400 hourly rows span 17 days of one month: the month cycle is constant and left out
    assert state["known_future"] == ["cycle_quad", "hour_sin", "hour_cos", "weekday_sin", "weekday_cos",
                                     "monthday_sin", "monthday_cos"]
    assert set(state["known_future"]) <= set(state["inputs"])
    said = " ".join((result.out + result.err).split())
    readers = {"seq2seq_attention", "tft", "informer", "nhits"}
    # a model that cannot read known-future values says so, once, instead of silently ignoring them
    assert said.count("reads no values beyond a window's end") == (model not in readers)
    assert_predict_reproduces_the_run(result.run_dir, tmp_path)


def test_tcn_warns_when_its_receptive_field_is_shorter_than_the_window(run_cli):
    result = run_cli("model=tcn", "model.num_channels=[4]", "model.kernel_size=2", *TINY_RUN)
    assert result.code == 0, result.err
    assert "receptive field 3 < data.seq_length 16" in " ".join((result.out + result.err).split())
    assert result.metrics()["model"]["receptive_field"] == 3


def test_quantile_loss_for_any_model(run_cli):
    result = run_cli("task=regression", "loss=quantile", "quantiles=[0.05,0.5,0.95]", *TINY)
    assert result.code == 0, result.err
    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    assert {"q0.05", "q0.5", "q0.95"} <= set(predictions.columns)


def test_without_checkpoints_the_best_epoch_is_the_last_one_run(run_cli):
    result = run_cli("trainer.enable_checkpointing=false", *TINY)
    assert result.code == 0, result.err
    metrics = result.metrics()
    assert metrics["best_epoch"] == metrics["epochs"] - 1  # the weights tested are the last ones
    assert not (result.run_dir / "checkpoints").exists()


def test_epoch_losses_are_means_over_windows_with_the_short_last_batch_weighted_by_its_size(run_cli):
    args = [a for a in TINY if not a.startswith("trainer.limit_train_batches")]
    result = run_cli(*args, "data.batch_size=100", "trainer.log_every_n_steps=1")
    assert result.code == 0, result.err
    windows = result.metrics()["windows"]["train"]
    sizes = [100] * (windows // 100) + ([windows % 100] if windows % 100 else [])
    assert sizes[-1] < 100  # the case that tells a weighted mean from a plain one
    steps = pd.read_csv(result.run_dir / "steps.csv")
    epochs = pd.read_csv(result.run_dir / "metrics.csv")
    for epoch, row in epochs.iterrows():
        losses = steps.loc[steps["epoch"] == epoch, "loss"].to_numpy()
        assert len(losses) == len(sizes)
        weighted = float((losses * sizes).sum() / windows)
        assert row["train_loss"] == pytest.approx(weighted, rel=1e-6)
        assert abs(row["train_loss"] - losses.mean()) > 1e-6


@pytest.mark.parametrize("classes", [2, 3])
def test_the_training_accuracy_counts_as_torchmetrics_accuracy(classes):
    """The training steps' own accuracy (no device read-back per update) gives torchmetrics'
    figure to the last bit, ties and a 0.5 probability included."""
    import torch
    import torchmetrics as tm

    from seqtrain.engine.module import TrainingAccuracy, _classification_metrics

    ours, reference = TrainingAccuracy(), _classification_metrics(classes)["acc"]
    generator = torch.Generator().manual_seed(classes)
    for size in (128, 128, 57):
        probs = torch.rand(size, classes, generator=generator).softmax(-1)
        probs[:5] = 1.0 / classes  # ties: the first class, as argmax takes it
        if classes == 2:
            probs = probs[:, 1]
            probs[5:9] = 0.5  # exactly the threshold: class 0
        y = torch.randint(0, classes, (size,), generator=generator)
        ours.update(probs, y)
        reference.update(probs, y)
    assert isinstance(reference, tm.Metric)
    assert torch.equal(ours.compute(), reference.compute())
