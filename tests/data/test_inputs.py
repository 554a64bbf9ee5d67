"""Inputs as users give them: a time column with a time zone, column names with any characters,
prices that often do not move. Each works, or gets one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from seqtrain.data.labels import labels_from_moves
from seqtrain.data.memory import read_table
from seqtrain.data.stream_plan import plan_stream
from seqtrain.errors import SeqtrainError
from seqtrain.run.predict import Predictor
from tests.conftest import run_seqtrain
from tests.data.test_bad_input import check_error
from tests.helpers import make_table

ZONE = "America/New_York"
TINY = ["data=parquet", "data.target=close", "data.group_col=symbol", "task=regression",
        "data.features=[ret,vol,rsi]", "data.seq_length=8", "model.hidden_size=8", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "progress_bar=false", "plots=false"]


def data_cfg(path, *overrides):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        return compose("config", overrides=["data=parquet", f"data.path={path}", "data.target=close",
                                            "data.group_col=symbol", "data.features=[ret,vol,rsi]",
                                            *overrides]).data


def daily_closes(tmp_path, zone: str | None, hour: int = 16, name: str | None = None):
    """Daily bars at ``hour`` o'clock on the wall of ``zone`` (through both daylight-saving
    changes), written with that zone, or without one."""
    frame = make_table(300, n_series=2)
    frame["time"] = frame["time"] + pd.Timedelta(hours=hour)
    if zone is not None:
        frame["time"] = frame["time"].dt.tz_localize(zone)
    path = tmp_path / (name or f"{(zone or 'wall').replace('/', '_')}.parquet")
    frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("reader", [read_table, plan_stream], ids=["in_memory", "streamed"])
def test_a_zoned_table_is_split_and_given_calendars_on_its_own_clock(tmp_path, reader):
    # 16:00 in New York is 20:00 or 21:00 UTC by the season: read in UTC, the hour would vary
    # (a calendar column that is only daylight saving) and 18:00 would fall before the day's bar
    overrides = ["data.time_features=true", "data.split.val_start=2022-08-01 18:00",
                 "data.split.test_start=2022-09-01"]
    wall, zoned = daily_closes(tmp_path, None), daily_closes(tmp_path, ZONE)
    expected = reader(data_cfg(wall, *overrides), "regression", str(wall)).state.to_dict()
    got = reader(data_cfg(zoned, *overrides), "regression", str(zoned)).state.to_dict()
    assert got["calendar_cycles"] == expected["calendar_cycles"] == ["weekday", "monthday", "month"]
    assert got["rows"] == expected["rows"]
    np.testing.assert_allclose(got["scaler"]["mean"], expected["scaler"]["mean"], rtol=1e-6)
    assert got["time_zone"] == ZONE and expected["time_zone"] is None
    assert got["split"]["val_start"] == "2022-08-01T18:00:00-04:00"  # recorded on the table's clock
    # a boundary with an offset is that instant, whatever the zone it is written in
    same = reader(data_cfg(zoned, *overrides[:1], "data.split.val_start='2022-08-01T22:00:00Z'",
                           "data.split.test_start='2022-09-01T05:00:00+01:00'"), "regression", str(zoned))
    assert same.state.to_dict()["rows"] == expected["rows"]


@pytest.mark.parametrize("overrides, fragment", [
    (["data.split.val_start='2022-08-01T00:00:00-04:00'", "data.split.test_start=2022-09-01"],
     "data.split.val_start: '2022-08-01T00:00:00-04:00' has a time zone but the time column has none"),
])
def test_a_boundary_with_an_offset_on_a_table_without_a_zone_is_one_line(tmp_path, overrides, fragment):
    path = daily_closes(tmp_path, None)
    with pytest.raises(SeqtrainError, match=fragment):
        read_table(data_cfg(path, *overrides), "regression", str(path))


def test_a_boundary_that_no_clock_in_the_zone_shows_is_one_line(tmp_path):
    path = daily_closes(tmp_path, ZONE)
    with pytest.raises(SeqtrainError, match="data.split.val_start: cannot read '2022-03-13 02:30' as a "
                                            "value of the time column in America/New_York"):
        read_table(data_cfg(path, "data.split.val_start='2022-03-13 02:30'",
                            "data.split.test_start=2022-09-01"), "regression", str(path))


def test_a_zoned_table_trains_and_predicts_as_its_utc_twin(run_cli, tmp_path, monkeypatch, capsys):
    zoned = daily_closes(tmp_path, ZONE)
    twin = tmp_path / "utc.parquet"  # the same instants, as UTC wall times without a zone
    table = pd.read_parquet(zoned)
    table.assign(time=table["time"].dt.tz_convert("UTC").dt.tz_localize(None)).to_parquet(twin, index=False)
    runs = {}
    for name, path in (("zoned", zoned), ("twin", twin)):
        result = run_cli(*TINY, f"data.path={path}")
        assert result.code == 0, result.err
        runs[name] = result.run_dir
    reported = {k: pd.read_parquet(v / "predictions.parquet") for k, v in runs.items()}
    assert str(reported["zoned"]["time"].dt.tz) == ZONE  # written back on the table's clock
    as_utc = reported["zoned"]["window_end"].dt.tz_convert("UTC").dt.tz_localize(None)
    assert (as_utc == reported["twin"]["window_end"]).all()
    np.testing.assert_array_equal(reported["zoned"]["y_pred"], reported["twin"]["y_pred"])

    predictor = Predictor.from_run(runs["zoned"], device="cpu")
    london = tmp_path / "london.parquet"  # another zone: the same instants, written back in it
    table.assign(time=table["time"].dt.tz_convert("Europe/London")).to_parquet(london, index=False)
    predicted = {}
    for name, path in (("zoned", zoned), ("london", london)):
        predictor.predict_path(str(path), tmp_path / f"predicted_{name}.parquet")
        predicted[name] = pd.read_parquet(tmp_path / f"predicted_{name}.parquet")
    assert str(predicted["london"]["window_end"].dt.tz) == "Europe/London"
    assert (predicted["london"]["window_end"] == predicted["zoned"]["window_end"]).all()  # as instants
    np.testing.assert_array_equal(predicted["london"]["y_pred"], predicted["zoned"]["y_pred"])
    test_rows = predicted["zoned"].merge(reported["zoned"], on=["window_end", "symbol"],
                                         suffixes=("", "_run"))
    assert len(test_rows) == len(reported["zoned"])
    np.testing.assert_allclose(test_rows["y_pred"], test_rows["y_pred_run"], rtol=1e-5)

    # times without a zone for a model trained on zoned times: which clock? one line
    code, out = run_seqtrain(monkeypatch, capsys, "predict", f"run={runs['zoned']}", f"data.path={twin}",
                             f"output={tmp_path / 'naive.parquet'}")
    assert code == 2 and "Traceback" not in out, out
    assert f"time column 'time' of {twin} has no time zone; the model was trained on times in {ZONE}" in out
    code, out = run_seqtrain(monkeypatch, capsys, "predict", f"run={runs['twin']}", f"data.path={zoned}",
                             f"output={tmp_path / 'zoned.parquet'}")
    assert code == 2 and "the model was trained on times without a zone" in out, out


ODD = {"ret": "sma(5)", "vol": "ret,1d", "rsi": "ret=1 Δ €"}


def test_column_names_with_any_characters_train_and_are_listed_unambiguously(run_cli, tmp_path):
    path = tmp_path / "odd.parquet"
    make_table(300, n_series=2).rename(columns=ODD).to_parquet(path, index=False)
    odd = [*ODD.values()]
    result = run_cli(*TINY[:4], *TINY[5:], f"data.path={path}", f"data.features=[{','.join(map(repr, odd))}]")
    assert result.code == 0, result.err
    predicted = Predictor.from_run(result.run_dir, device="cpu")
    assert predicted.state.features == odd
    predicted.predict_path(str(path), tmp_path / "predicted.parquet")
    assert len(pd.read_parquet(tmp_path / "predicted.parquet"))

    # unquoted, the command line splits 'ret,1d' in two: the listing shows where names end
    result = run_cli(*TINY[:4], f"data.path={path}", "data.features=[ret,1d]")
    check_error(result, "data.features: column 'ret' not found",
                "(columns: time, symbol, 'sma(5)', 'ret,1d', 'ret=1 Δ €', close, up)",
                "quote names that hold commas: data.features=['ret,1d']")


def tick_closes(n_rows: int = 400, seed: int = 0, tick: float = 0.05) -> pd.DataFrame:
    """Prices rounded to a tick: about half of the daily moves are no move at all."""
    frame = make_table(n_rows, n_series=2, seed=seed)
    frame["close"] = (100 + (frame["close"] - 100) * 0.05).div(tick).round().mul(tick)
    return frame


def test_with_no_dead_zone_an_unchanged_price_is_flat_never_down(tmp_path):
    moves = np.log1p(np.array([-0.001, 0.0, 0.002, np.nan]))
    assert labels_from_moves("direction", moves, 0.0).tolist() == ["down", "flat", "up", None]
    frame = tick_closes()
    path = tmp_path / "ticks.parquet"
    frame.to_parquet(path, index=False)
    counts_of = {}
    for reader in (read_table, plan_stream):
        data = reader(data_cfg(path, "data.label=direction", "data.dead_zone=0", "data.seq_length=8"),
                      "classification", str(path))
        assert data.classes == ["down", "flat", "up"]
        close = frame.sort_values(["symbol", "time"], kind="stable")["close"].to_numpy()
        move = np.r_[np.nan, close[1:] / close[:-1] - 1]
        counts = np.asarray(data.state.to_dict()["class_counts"])  # training windows: down, flat, up
        if reader is read_table:
            train = data.ends["train"] + 1
            labels = np.asarray(data.classes, dtype=object)[data.labels[train]]
            assert (labels[move[train] == 0] == "flat").all() and (move[train] == 0).mean() > 0.2
            assert (labels[move[train] < 0] == "down").all() and (labels[move[train] > 0] == "up").all()
            assert counts.tolist() == [int((labels == c).sum()) for c in data.classes]
        counts_of[reader] = counts.tolist()
    assert counts_of[plan_stream] == counts_of[read_table]  # streamed labels as in memory


def test_a_flat_move_training_never_saw_is_one_line_in_training_and_no_truth_when_predicting(
        run_cli, tmp_path):
    smooth = make_table(300, n_series=2)  # no price repeats itself: down and up only
    path = tmp_path / "smooth.parquet"
    smooth.to_parquet(path, index=False)
    args = [*TINY[:3], "task=classification", *TINY[4:], "data.label=direction", "data.dead_zone=0"]
    result = run_cli(*args, f"data.path={path}")
    assert result.code == 0, result.err
    predictor = Predictor.from_run(result.run_dir, device="cpu")
    assert predictor.state.classes == ["down", "up"]
    ticks = tmp_path / "ticks.parquet"
    tick_closes(300).to_parquet(ticks, index=False)
    predictor.predict_path(str(ticks), tmp_path / "predicted.parquet")
    predicted = pd.read_parquet(tmp_path / "predicted.parquet")
    table = pd.read_parquet(ticks)
    close = table.set_index(["symbol", "time"])["close"]
    start = close.loc[list(zip(predicted["symbol"], predicted["window_end"], strict=True))].to_numpy()
    labelled = predicted["time"].notna().to_numpy()
    end = np.full(len(predicted), np.nan)
    end[labelled] = close.loc[list(zip(predicted["symbol"][labelled], predicted["time"][labelled],
                                       strict=True))].to_numpy()
    unchanged = labelled & (end == start)
    assert unchanged.sum() > 10
    assert predicted["y_true"][unchanged].isna().all()  # a class the model never saw: no truth
    moved = labelled & (end != start)
    expected = np.where(end[moved] > start[moved], "up", "down")
    assert (predicted["y_true"][moved].to_numpy() == expected).all()

    # in training, a flat move only after the training rows is refused, naming the dead zone
    late = smooth.copy()
    late.loc[late.index % 300 > 280, "close"] = late.groupby("symbol")["close"].transform("last")
    late_path = tmp_path / "late.parquet"
    late.to_parquet(late_path, index=False)
    check_error(run_cli(*args, f"data.path={late_path}"), "class(es) flat in the test split",
                "widen data.dead_zone")
