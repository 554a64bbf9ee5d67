"""Every bad input gets one clear line naming what to fix, exit status 2, and no traceback."""

import numpy as np
import pandas as pd
import pytest

from tests.helpers import make_table

PARQUET = ["data=parquet", "data.target=close", "data.group_col=symbol", "progress_bar=false", "plots=false",
           "task=regression"]


def check_error(result, *fragments):
    assert result.code == 2, result.err + result.out
    assert "Traceback" not in result.err + result.out
    message = " ".join(result.err.split())
    assert message.startswith("error:"), result.err
    for fragment in fragments:
        assert fragment in message, message
    return message


def write(tmp_path, frame, name="bad.parquet"):
    path = tmp_path / name
    frame.to_parquet(path, index=False)
    return path


def test_missing_file(run_cli, tmp_path):
    result = run_cli(*PARQUET, f"data.path={tmp_path / 'nope.parquet'}")
    check_error(result, "data.path", "file not found", "nope.parquet")


def test_not_a_parquet_file(run_cli, tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("time,close\n1,2\n")
    check_error(run_cli(*PARQUET, f"data.path={path}"), "data.path", "not a readable Parquet file")


@pytest.mark.parametrize("key,value", [("target", "price"), ("time_col", "date"),
                                       ("group_col", "ticker"), ("features", "[ret,volume]")])
def test_missing_column(run_cli, bars, key, value):
    missing = value.strip("[]").split(",")[-1]
    check_error(run_cli(*PARQUET, f"data.path={bars}", f"data.{key}={value}"),
                f"data.{key}", f"{missing!r} not found", "columns: time, symbol")


def test_non_numeric_feature(run_cli, tmp_path):
    frame = make_table(100)
    frame["sector"] = "tech"
    path = write(tmp_path, frame)
    check_error(run_cli(*PARQUET, f"data.path={path}", "data.features=[ret,sector]"),
                "data.features", "'sector' is not numeric")


def test_nan_in_features_reports_count_and_first_row(run_cli, tmp_path):
    frame = make_table(100)
    frame.loc[[17, 40], "vol"] = np.nan
    frame.loc[60, "vol"] = np.inf
    path = write(tmp_path, frame)
    check_error(run_cli(*PARQUET, f"data.path={path}"),
                "'vol' has 3 NaN/inf", "first at row 17", "data.nan_policy")


def test_nan_in_target(run_cli, tmp_path):
    frame = make_table(100)
    frame.loc[33, "close"] = np.nan
    path = write(tmp_path, frame)
    check_error(run_cli(*PARQUET, f"data.path={path}"), "data.target", "'close' has 1 NaN/inf",
                "row 33")


@pytest.mark.parametrize("policy", ["ffill", "drop"])
def test_nan_policy_lets_the_run_through(run_cli, tmp_path, policy):
    frame = make_table(200)
    frame.loc[[17, 40], "vol"] = np.nan
    path = write(tmp_path, frame)
    result = run_cli(*PARQUET, f"data.path={path}", f"data.nan_policy={policy}", "data.seq_length=8",
                     "trainer=debug", "model.hidden_size=8")
    assert result.code == 0, result.err
    assert result.metrics()["windows"]["train"] > 0


def test_unsorted_timestamps(run_cli, tmp_path):
    frame = make_table(100, n_series=2)
    frame.iloc[[10, 11]] = frame.iloc[[11, 10]].to_numpy()
    path = write(tmp_path, frame)
    check_error(run_cli(*PARQUET, f"data.path={path}"), "data.time_col", "is not sorted",
                "series 'SYM0'", "data.sort=true")
    assert run_cli(*PARQUET, f"data.path={path}", "data.sort=true", "trainer=debug",
                   "data.seq_length=8").code == 0


def test_duplicate_timestamps(run_cli, tmp_path):
    frame = make_table(100, n_series=2)
    frame.loc[150, "time"] = frame.loc[149, "time"]
    path = write(tmp_path, frame)
    check_error(run_cli(*PARQUET, f"data.path={path}"), "duplicate timestamps", "series 'SYM1'",
                "row 150")


def test_series_too_short_for_one_window(run_cli, tmp_path):
    path = write(tmp_path, make_table(40))
    check_error(run_cli(*PARQUET, f"data.path={path}", "data.seq_length=64"),
                "data.seq_length", "every series is shorter than one window")


def test_split_too_short_for_one_window(run_cli, tmp_path):
    path = write(tmp_path, make_table(100))
    check_error(run_cli(*PARQUET, f"data.path={path}", "data.seq_length=4", "data.horizon=15"),
                "data.split", "has no complete window")


def test_classification_target_with_one_class(run_cli, tmp_path):
    frame = make_table(100)
    frame["up"] = 1
    path = write(tmp_path, frame)
    check_error(run_cli(*PARQUET, f"data.path={path}", "data.target=up", "data.horizon=0",
                        "task=classification"), "data.target", "single class")


def test_classification_target_that_is_not_a_label(run_cli, bars):
    check_error(run_cli(*PARQUET, f"data.path={bars}", "task=classification"),
                "non-integer values", "task=regression")


def test_class_unseen_in_training(run_cli, tmp_path):
    frame = make_table(200)
    frame["up"] = np.where(np.arange(200) > 185, 2, np.arange(200) % 2)
    path = write(tmp_path, frame)
    check_error(run_cli(*PARQUET, f"data.path={path}", "data.target=up", "data.horizon=0",
                        "data.seq_length=5", "task=classification"), "class(es) 2", "test split")


@pytest.mark.parametrize("override,key", [
    ("data.seq_length=0", "data.seq_length"),
    ("data.horizon=-1", "data.horizon"),
    ("data.output_steps=0", "data.output_steps"),
    ("data.split.val=1.5", "data.split.val"),
    ("data.split.test=0.9", "data.split"),
    ("data.nan_policy=zero", "data.nan_policy"),
    ("task=ranking", "task"),
    ("early_stopping.monitor=val_acc", "early_stopping.monitor"),
    ("loss=hinge", "loss"),
    ("optim.name=rmsprop", "optim.name"),
    ("trainer.accelerator=gpu", "trainer.accelerator"),
    ("trainer.precision=17", "trainer"),
    ("model.hidden_sise=8", "model.hidden_sise"),
    ("data.known_future=[volume]", "data.known_future"),
    ("data.known_future=[close]", "data.known_future"),
    ("loss=quantile quantiles=[0.1,0.9]", "quantiles"),
])
def test_bad_settings(run_cli, bars, override, key):
    check_error(run_cli(*PARQUET, f"data.path={bars}", "task=regression", *override.split()), key)


@pytest.mark.parametrize("arg,listing", [
    ("model=transformer",
     "cnn_lstm, gru, inception_time, informer, lstm, nhits, patchtst, seq2seq_attention, tcn, tft"),
    ("trainer=tpu", "ddp, debug, default, gpu"),
    ("data=csv", "cases, parquet, synthetic"),
])
def test_unknown_group_option_lists_the_valid_ones(run_cli, arg, listing):
    check_error(run_cli(arg), arg, f"choose one of {listing}")


def test_split_dates_out_of_order(run_cli, bars):
    check_error(run_cli(*PARQUET, f"data.path={bars}", "data.split.val_start=2022-09-01",
                        "data.split.test_start=2022-06-01"), "data.split", "val_start < test_start")


def test_a_failed_run_leaves_an_earlier_run_untouched(run_cli, tmp_path, bars):
    run_dir = tmp_path / "fixed"
    first = run_cli(*PARQUET, f"data.path={bars}", "task=regression", "trainer=debug", run_dir=run_dir)
    assert first.code == 0, first.err
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    again = run_cli(*PARQUET, f"data.path={bars}", "data.seq_length=5", run_dir=run_dir)
    check_error(again, "already holds a run")
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before


def test_time_column_of_strings_that_are_not_dates(run_cli, tmp_path):
    frame = make_table(100)
    frame["time"] = "someday"
    path = write(tmp_path, frame)
    check_error(run_cli(*PARQUET, f"data.path={path}"), "data.time_col", "neither timestamps nor numbers")


def test_empty_table(run_cli, tmp_path):
    path = write(tmp_path, make_table(10).iloc[:0])
    check_error(run_cli(*PARQUET, f"data.path={path}"), "has no rows")


def test_numeric_time_column_and_string_classes_work(run_cli, tmp_path):
    frame = make_table(200)
    frame["time"] = np.arange(200) * 60
    frame["label"] = np.where(frame["up"] == 1, "up", "down")
    path = write(tmp_path, frame)
    result = run_cli(*PARQUET, f"data.path={path}", "data.target=label", "data.horizon=0",
                     "data.features=[ret,vol]", "task=classification", "trainer=debug",
                     "data.seq_length=8")
    assert result.code == 0, result.err
    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    assert set(predictions["y_true"]) <= {"up", "down"}
    assert {"prob_down", "prob_up"} <= set(predictions.columns)


def test_console_script_reports_one_line_and_exit_status(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("seqtrain")
    done = subprocess.run([str(script), "data=parquet", f"data.path={tmp_path / 'x.parquet'}",
                           "data.target=y", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: data.path: file not found"), lines


def test_required_key_left_unset(run_cli):
    check_error(run_cli("data=parquet"), "data.path: required")


def test_time_features_need_timestamps(run_cli, tmp_path):
    frame = make_table(100)
    frame["time"] = np.arange(100)
    path = write(tmp_path, frame)
    check_error(run_cli(*PARQUET, f"data.path={path}", "data.time_features=true"),
                "data.time_features", "needs timestamps")


def test_an_error_from_a_dataloader_worker_is_still_one_line():
    from seqtrain.console import one_line

    wrapped = ("Caught SeqtrainError in DataLoader worker process 0.\nOriginal Traceback (most recent "
               "call last):\n  File \"x.py\", line 1, in f\nseqtrain.errors.SeqtrainError: data.path: "
               "cannot read part-3.parquet: bad footer")
    assert one_line(wrapped) == "data.path: cannot read part-3.parquet: bad footer"
    assert one_line("data.target: plain") == "data.target: plain"


@pytest.mark.parametrize("override,key", [
    ("optim.name=rmsprop", "optim.name"),
    ("optim.lr=fast", "optim.lr"),
    ("scheduler.name=cyclic", "scheduler.name"),
    ("scheduler.pct_start=1.5", "scheduler.pct_start"),
    ("loss=hinge", "loss"),
    ("task=ranking", "task"),
    ("early_stopping.monitor=val_acc", "early_stopping.monitor"),
    ("model.hidden_sise=8", "model.hidden_sise"),
    ("trainer.precision=17", "trainer.precision"),
    ("data.streaming=maybe", "data.streaming"),
    ("data.memory_budget=lots", "data.memory_budget"),
    ("data.leakage_audit=loud", "data.leakage_audit"),
    ("data.split.by=symbol", "data.split.by"),
    ("+augment.jiter={p:0.5}", "augment.jiter"),
    ("+trainer.max_epoch=3", "trainer.max_epoch"),
    ("early_stopping.patience=soon", "early_stopping.patience"),
])
def test_every_setting_is_checked_before_any_data_is_read(run_cli, tmp_path, override, key):
    # the table does not exist: an error naming the setting proves the data was never opened
    result = run_cli(*PARQUET, f"data.path={tmp_path / 'missing.parquet'}", override)
    message = check_error(result, key)
    assert "missing.parquet" not in message
