"""``seqtrain predict``: a trained run applied to any table, by the training rules, with nothing
refit; the run's own test windows come back exactly as the run reported them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seqtrain
from seqtrain.config import parse_arguments
from seqtrain.errors import SeqtrainError
from seqtrain.run.predict import OLDER_SPELLINGS, PREDICT_KEYS, Predictor
from tests.conftest import TINY, TINY_RUN, run_seqtrain

KEYS = ["symbol", "window_end", "step"]


def run_predict(monkeypatch, capsys, *args: str):
    return run_seqtrain(monkeypatch, capsys, "predict", *args)


def assert_predict_reproduces_the_run(run_dir: Path, tmp_path: Path, table_path: Path | None = None
                                      ) -> pd.DataFrame:
    """Predicting on the run's own table reproduces predictions.parquet for every test window,
    in memory and streamed (from a copy cut into small row groups), and gives every window with
    enough history a forecast, the newest ones included."""
    predictor = Predictor.from_run(run_dir, device="cpu")
    table_path = table_path or run_dir / "data" / "synthetic.parquet"
    in_memory = tmp_path / "in_memory.parquet"
    predictor.predict_path(str(table_path), in_memory)
    predicted = pd.read_parquet(in_memory)

    reported = pd.read_parquet(run_dir / "predictions.parquet")
    joined = reported.merge(predicted, on=KEYS, how="left", suffixes=("", "_new"), indicator=True)
    assert (joined["_merge"] == "both").all()
    assert (joined["time"] == joined["time_new"]).all()
    assert (joined["y_true"] == joined["y_true_new"]).all()
    outputs = [c for c in reported.columns if c.startswith(("prob_", "q")) or c == "y_pred"]
    for column in outputs:
        if reported[column].dtype.kind not in "f":  # class ids or names
            assert (joined[column] == joined[f"{column}_new"]).all(), column
        else:
            np.testing.assert_allclose(joined[f"{column}_new"], joined[column], rtol=1e-5, atol=1e-6)

    streamed_table = tmp_path / "row_groups.parquet"
    pq.write_table(pq.read_table(table_path), streamed_table, row_group_size=97)
    streamed = tmp_path / "streamed.parquet"
    predictor.predict_path(str(streamed_table), streamed, streaming=True)
    streamed = pd.read_parquet(streamed).sort_values(KEYS, ignore_index=True)
    in_order = predicted.sort_values(KEYS, ignore_index=True)
    pd.testing.assert_frame_equal(streamed, in_order, rtol=1e-5, atol=1e-6)

    rows = pd.read_parquet(table_path)
    spec = predictor.state.window
    per_series = rows.groupby("symbol").size()
    newest_needs = spec.span if predictor.needs_label_rows else 0
    expected = int((per_series - (spec.history - 1) - newest_needs).clip(lower=0).sum())
    assert len(predicted) == expected * spec.output_steps
    return predicted


def test_predict_cli_round_trip_and_newest_window(run_cli, tmp_path, monkeypatch, capsys):
    trained = run_cli(*TINY)
    assert trained.code == 0, trained.err
    predicted = assert_predict_reproduces_the_run(trained.run_dir, tmp_path)

    table = trained.run_dir / "data" / "synthetic.parquet"
    code, said = run_predict(monkeypatch, capsys, f"run={trained.run_dir}", f"data.path={table}")
    assert code == 0, said
    written = trained.run_dir / "predictions" / "synthetic.parquet"
    assert f"{len(predicted)} prediction rows -> {written}" in " ".join(said.split())
    # a second call never replaces the first file
    code, said = run_predict(monkeypatch, capsys, f"run={trained.run_dir}", f"data.path={table}",
                             "ckpt=last", "newest=true")
    assert code == 0, said
    assert written.exists() and (trained.run_dir / "predictions" / "synthetic-2.parquet").exists()
    newest = pd.read_parquet(trained.run_dir / "predictions" / "synthetic-2.parquet")
    rows = pd.read_parquet(table)
    assert len(newest) == rows["symbol"].nunique()
    last_times = rows.groupby("symbol")["time"].max()
    assert (newest.set_index("symbol")["window_end"] == last_times).all()
    assert newest["time"].isna().all()  # the label row of the newest window is still in the future


def test_rows_with_too_little_history_get_no_prediction_and_nothing_is_refit(run_cli, tmp_path):
    trained = run_cli(*TINY)
    assert trained.code == 0, trained.err
    predictor = Predictor.from_run(trained.run_dir, device="cpu")
    rows = pd.read_parquet(trained.run_dir / "data" / "synthetic.parquet")
    full = predictor.predict_frame(rows)
    # the newest 40 rows of each series alone: 16-row windows only from their 16th row on, and the
    # same numbers as with the whole table (a scaler refit on the new rows would change them)
    tail = rows.groupby("symbol").tail(40)
    part = predictor.predict_frame(tail)
    assert len(part) == 3 * (40 - 15)
    first_end = tail.groupby("symbol")["time"].nth(15).to_numpy()
    assert np.array_equal(np.sort(part.groupby("symbol")["window_end"].min().to_numpy()), np.sort(first_end))
    joined = part.merge(full, on=KEYS, suffixes=("", "_full"))
    assert len(joined) == len(part)
    np.testing.assert_allclose(joined["prob_1"], joined["prob_1_full"], rtol=1e-6)


def test_predict_on_a_dataframe_indexed_by_time_and_series(run_cli):
    trained = run_cli(*TINY)
    predictor = Predictor.from_run(trained.run_dir, device="cpu")
    rows = pd.read_parquet(trained.run_dir / "data" / "synthetic.parquet")
    plain = predictor.predict_frame(rows)
    indexed = predictor.predict_frame(rows.set_index(["time", "symbol"]))
    pd.testing.assert_frame_equal(plain, indexed)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny run shared by the schema checks (they never change it)."""
    import subprocess

    run_dir = tmp_path_factory.mktemp("predict") / "run"
    done = subprocess.run([sys.executable, "-m", "seqtrain.cli", *TINY, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return run_dir


def test_a_predictor_settles_malloc_as_training_does(trained_run, monkeypatch):
    """Each batch's activations are freed and allocated again, as in training (README)."""
    calls = []
    monkeypatch.setattr("seqtrain.run.predict.settle_malloc", lambda: calls.append(1))
    Predictor.from_run(trained_run, device="cpu")
    assert calls == [1]


def _table(trained_run: Path) -> pd.DataFrame:
    return pd.read_parquet(trained_run / "data" / "synthetic.parquet")


@pytest.mark.parametrize("change, expected", [
    (lambda t: t.drop(columns=["cycle_obs"]), "column 'cycle_obs' is missing from"),
    (lambda t: t.assign(driver=t["driver"].astype(str)), "column 'driver' of"),
    (lambda t: t.assign(symbol=t["symbol"].str.replace("S2", "S9")),
     "series 'S9' never occurred in training"),
    (lambda t: t.assign(time=np.arange(len(t), dtype=np.int64)), "the model was trained on timestamps"),
    (lambda t: t.assign(cycle_obs=t["cycle_obs"].where(t.index != 7)),
     "column 'cycle_obs' has 1 NaN/inf value(s), first at row 7"),
    (lambda t: t.groupby("symbol").head(10), "no series in"),
    (lambda t: t.iloc[::-1], "is not sorted in series"),
])
def test_bad_tables_are_one_line_naming_the_problem(trained_run, tmp_path, monkeypatch, capsys, change,
                                                    expected):
    table = change(_table(trained_run))
    path = tmp_path / "new.parquet"
    table.to_parquet(path, index=False)
    output = tmp_path / "out.parquet"
    output.write_bytes(b"earlier file")
    code, said = run_predict(monkeypatch, capsys, f"run={trained_run}", f"data.path={path}",
                             f"output={output}", "overwrite=true")
    assert code == 2
    assert "Traceback" not in said and len(said.strip().splitlines()) == 1, said
    assert expected in " ".join(said.split())
    assert output.read_bytes() == b"earlier file"  # nothing already written is touched
    assert not list(tmp_path.glob("*.tmp"))


def test_new_series_only_when_allowed(trained_run, tmp_path, monkeypatch, capsys):
    table = _table(trained_run)
    table["symbol"] = table["symbol"].str.replace("S2", "NEW")
    path = tmp_path / "new.parquet"
    table.to_parquet(path, index=False)
    code, said = run_predict(monkeypatch, capsys, f"run={trained_run}", f"data.path={path}",
                             f"output={tmp_path / 'out.parquet'}", "allow_new_series=true")
    assert code == 0, said
    assert set(pd.read_parquet(tmp_path / "out.parquet")["symbol"]) == {"S0", "S1", "NEW"}


@pytest.mark.parametrize("args, expected", [
    (["data.path=x.parquet"], "predict: run= is required"),
    (["run=/nonexistent", "data.path=x.parquet"], "/nonexistent is not a seqtrain run folder"),
    (["run=RUN", "data.path=x.parquet", "lastt=true"], "'lastt=true' is not a setting"),
    (["run=RUN", "data.path=x.parquet", "ckpt=nope.ckpt"], "ckpt: nope.ckpt not found"),
    (["run=RUN", "data.path=missing.parquet"], "file not found: missing.parquet"),
    (["run=RUN", "data.path=x.parquet", "device=tpu"], "device='tpu'; choose auto, cpu or cuda"),
])
def test_bad_arguments_are_one_line(trained_run, monkeypatch, capsys, args, expected):
    args = [a.replace("RUN", str(trained_run)) for a in args]
    code, said = run_predict(monkeypatch, capsys, *args)
    assert code == 2 and "Traceback" not in said
    assert expected in " ".join(said.split())


def test_streamed_table_in_several_files_equals_one_file(trained_run, tmp_path):
    predictor = Predictor.from_run(trained_run, device="cpu")
    table = pa.Table.from_pandas(_table(trained_run), preserve_index=False)
    folder = tmp_path / "parts"
    folder.mkdir()
    half = table.num_rows // 2  # rows are in time order: the second file continues the first
    pq.write_table(table.slice(0, half), folder / "part-0.parquet", row_group_size=50)
    pq.write_table(table.slice(half), folder / "part-1.parquet", row_group_size=50)
    one, many = tmp_path / "one.parquet", tmp_path / "many.parquet"
    predictor.predict_path(str(trained_run / "data" / "synthetic.parquet"), one)
    predictor.predict_path(str(folder), many, streaming=True)
    pd.testing.assert_frame_equal(pd.read_parquet(many).sort_values(KEYS, ignore_index=True),
                                  pd.read_parquet(one).sort_values(KEYS, ignore_index=True),
                                  rtol=1e-5, atol=1e-6)


def test_a_table_in_memory_is_fed_in_slices_with_the_same_predictions(trained_run, monkeypatch):
    import seqtrain.run.predict

    predictor = Predictor.from_run(trained_run, device="cpu")
    table = _table(trained_run)
    whole = predictor.predict_frame(table)
    monkeypatch.setattr(seqtrain.run.predict, "SLICE_ROWS", 97)
    sliced = predictor.predict_frame(table)
    pd.testing.assert_frame_equal(sliced.sort_values(KEYS, ignore_index=True),
                                  whole.sort_values(KEYS, ignore_index=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["ffill", "drop"])
def test_missing_values_follow_the_runs_nan_policy(run_cli, policy):
    trained = run_cli(*TINY, f"data.nan_policy={policy}")
    assert trained.code == 0, trained.err
    predictor = Predictor.from_run(trained.run_dir, device="cpu")
    table = pd.read_parquet(trained.run_dir / "data" / "synthetic.parquet")
    row = table.index[(table["symbol"] == "S1")][100]
    holed = table.copy()
    holed.loc[row, "driver"] = np.nan
    got = predictor.predict_frame(holed).sort_values(KEYS, ignore_index=True)
    if policy == "ffill":  # the hole takes the series' previous value, as in training
        filled = table.copy()
        filled.loc[row, "driver"] = table.loc[row - 1, "driver"]
        expected = predictor.predict_frame(filled).sort_values(KEYS, ignore_index=True)
        pd.testing.assert_frame_equal(got, expected)
    else:  # the row is dropped: one window fewer, none ending at it
        full = predictor.predict_frame(table)
        assert len(got) == len(full) - 1
        assert table.loc[row, "time"] not in set(got.loc[got["symbol"] == "S1", "window_end"])


@pytest.mark.parametrize("setting", ["newest", "last", "allow_new_series", "overwrite", "streaming"])
@pytest.mark.parametrize("value", ["flase", "yes", "1", ""])
def test_booleans_are_true_or_false_and_nothing_else(trained_run, tmp_path, monkeypatch, capsys, setting,
                                                     value):
    output = tmp_path / "out.parquet"
    code, said = run_predict(monkeypatch, capsys, f"run={trained_run}",
                             f"data.path={trained_run / 'data' / 'synthetic.parquet'}", f"output={output}",
                             f"{setting}={value}")
    assert code == 2 and "Traceback" not in said and len(said.strip().splitlines()) == 1, said
    accepted = "choose auto, true or false" if setting == "streaming" else "choose true or false"
    assert f"predict: {setting}={value!r}; {accepted}" in " ".join(said.split())
    assert not output.exists()


def test_last_is_the_older_spelling_of_newest(trained_run, tmp_path, monkeypatch, capsys):
    """``last=true`` / ``last=True``, as the newest window was first asked for, still gives what
    ``newest`` gives, on the command line and from Python; the usage names ``newest`` only."""
    table = trained_run / "data" / "synthetic.parquet"
    written = {}
    for key in ("newest", "last"):
        written[key] = tmp_path / f"{key}.parquet"
        code, said = run_predict(monkeypatch, capsys, f"run={trained_run}", f"data.path={table}",
                                 f"output={written[key]}", f"{key}=true")
        assert code == 0, said
    newest = pd.read_parquet(written["newest"])
    assert len(newest) == 3  # one window per series
    pd.testing.assert_frame_equal(pd.read_parquet(written["last"]), newest)
    predictor = Predictor.from_run(trained_run, device="cpu")
    older = tmp_path / "older.parquet"
    predictor.predict_path(str(table), older, last=True)
    pd.testing.assert_frame_equal(pd.read_parquet(older), newest)
    rows = pd.read_parquet(table)
    pd.testing.assert_frame_equal(predictor.predict_frame(rows, last=True),
                                  predictor.predict_frame(rows, newest=True))
    run = seqtrain.load(trained_run)
    pd.testing.assert_frame_equal(run.predict(rows, last=True, device="cpu"),
                                  run.predict(rows, newest=True, device="cpu"))
    code, said = run_predict(monkeypatch, capsys, f"run={trained_run}", f"data.path={table}", "newst=true")
    usage = " ".join(said.split())
    assert code == 2 and "newest=..." in usage and "last=..." not in usage


def test_newest_and_last_together_are_one_line_not_the_later_one_winning():
    """``newest=true last=false`` names one setting twice under two spellings: refused, where
    the later one would silently decide."""
    for argv in (["newest=true", "last=false"], ["last=true", "newest=true"]):
        with pytest.raises(SeqtrainError, match=r"^predict: .* are one setting; give one of them$"):
            parse_arguments(argv, PREDICT_KEYS, "predict", older=OLDER_SPELLINGS)
    assert parse_arguments(["last=true"], PREDICT_KEYS, "predict", older=OLDER_SPELLINGS)["newest"] is True


def test_paths_are_taken_as_written(trained_run, tmp_path, monkeypatch, capsys):
    """Not as YAML: ``#`` would start a comment, brackets a list."""
    output = tmp_path / "preds #2 [v1].parquet"
    code, said = run_predict(monkeypatch, capsys, f"run={trained_run}",
                             f"data.path={trained_run / 'data' / 'synthetic.parquet'}", f"output={output}",
                             "newest=TRUE", "batch_size=64")
    assert code == 0, said
    assert len(pd.read_parquet(output)) == 3


def test_a_tz_aware_time_column_predicts_as_its_utc_times_or_is_one_line(trained_run, tmp_path, monkeypatch,
                                                                          capsys):
    """The run was trained on tz-naive times; the same instants in another zone give the same
    predictions (compared in UTC), in memory and streamed, or one line naming the time column
    with nothing written; never a traceback after the work was done."""
    naive = _table(trained_run)
    aware = naive.assign(time=naive["time"].dt.tz_localize("UTC").dt.tz_convert("America/New_York"))
    path = tmp_path / "aware.parquet"
    aware.to_parquet(path, index=False, row_group_size=101)
    reference = tmp_path / "naive.parquet"
    Predictor.from_run(trained_run, device="cpu").predict_path(
        str(trained_run / "data" / "synthetic.parquet"), reference)
    expected = pd.read_parquet(reference).sort_values(KEYS, ignore_index=True)

    def as_utc(times: pd.Series) -> pd.Series:
        return times.dt.tz_convert("UTC").dt.tz_localize(None) if times.dt.tz is not None else times

    for streaming in ("false", "true"):
        output = tmp_path / f"streaming-{streaming}.parquet"
        code, said = run_predict(monkeypatch, capsys, f"run={trained_run}", f"data.path={path}",
                                 f"output={output}", f"streaming={streaming}")
        assert "Traceback" not in said, said
        if code != 0:
            assert code == 2 and len(said.strip().splitlines()) == 1, said
            assert "time column 'time'" in said and not output.exists()
            continue
        got = pd.read_parquet(output).sort_values(KEYS, ignore_index=True)
        for column in ("time", "window_end"):
            got[column] = as_utc(got[column]).astype(expected[column].dtype)
        pd.testing.assert_frame_equal(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("setting", ["ckpt", "device"])
def test_an_empty_setting_with_a_default_is_one_line(trained_run, tmp_path, monkeypatch, capsys, setting):
    output = tmp_path / "out.parquet"
    code, said = run_predict(monkeypatch, capsys, f"run={trained_run}",
                             f"data.path={trained_run / 'data' / 'synthetic.parquet'}", f"output={output}",
                             f"{setting}=")
    assert code == 2 and "Traceback" not in said and f"predict: {setting}= is empty" in said, said
    assert not output.exists()


def test_the_runs_predictions_folder_is_no_output_file(trained_run, monkeypatch, capsys):
    folder = trained_run / "predictions"
    code, said = run_predict(monkeypatch, capsys, f"run={trained_run}",
                             f"data.path={trained_run / 'data' / 'synthetic.parquet'}", f"output={folder}",
                             "overwrite=true")
    assert code == 2 and "never overwritten" in " ".join(said.split()), said
    assert not folder.is_file()


def test_predict_runs_under_the_runs_precision_as_the_test_pass_does(run_cli, tmp_path, monkeypatch, capsys):
    """A bf16-mixed run's test windows get the very numbers from ``seqtrain predict`` that the
    test pass wrote: both read the windows, run the network under the run's autocast and read
    its outputs the same way (tcn: its bf16 kernels exist on every CPU)."""
    monkeypatch.setenv("SEQTRAIN_CPU_BF16", "1")
    trained = run_cli(*TINY_RUN, "model=tcn", "model.num_channels=[8,8]", "task=regression",
                      "data.output_steps=2", "trainer.precision=bf16-mixed")
    assert trained.code == 0, trained.err
    assert trained.metrics()["precision"] == "bf16-mixed"
    output = tmp_path / "predicted.parquet"
    table = trained.run_dir / "data" / "synthetic.parquet"
    code, said = run_predict(monkeypatch, capsys, f"run={trained.run_dir}", f"data.path={table}",
                             f"output={output}", "device=cpu")
    assert code == 0, said
    reported = pd.read_parquet(trained.run_dir / "predictions.parquet")
    joined = reported.merge(pd.read_parquet(output), on=KEYS, how="left", suffixes=("", "_new"),
                            indicator=True)
    assert len(joined) == len(reported) > 0 and (joined["_merge"] == "both").all()
    for column in ("time", "y_true", "y_pred", "lo_80", "hi_95"):
        assert (joined[column] == joined[f"{column}_new"]).all(), column
