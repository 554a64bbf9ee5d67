"""The look-ahead contract, end to end through reading, validation, scaling and the datasets.

A window ending at row t must be built from rows <= t only; its label is the target at t+h;
statistics come from training rows only; training labels never reach into validation.
"""

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from seqtrain.data.datamodule import SeqDataModule
from seqtrain.data.memory import read_table
from tests.helpers import make_table


def data_cfg(path, *overrides):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        cfg = compose("config", overrides=["data=parquet", f"data.path={path}", "data.target=close",
                                           "data.group_col=symbol", *overrides])
    return cfg.data


def windows(path, task, *overrides):
    """Prepared data and every window as arrays: {split: (end_rows, x, y)}."""
    data = read_table(data_cfg(path, *overrides), task, str(path))
    module = SeqDataModule(data, batch_size=64)
    out = {}
    for split, dataset in module.datasets.items():
        batch = dataset.__getitems__(list(range(len(dataset))))
        out[split] = (data.ends[split], batch["x"].numpy(), batch["y"].numpy())
    return data, out


def perturb_after(frame, time, rng):
    """Replace every value (features and target) of every series after ``time``."""
    later = frame["time"] > time
    changed = frame.copy()
    for column in ("ret", "vol", "rsi", "close"):
        changed.loc[later, column] = rng.normal(0, 100, later.sum())
    changed.loc[later, "up"] = rng.integers(0, 2, later.sum())
    return changed


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_window_inputs_do_not_change_when_later_rows_change(tmp_path, seed, task):
    rng = np.random.default_rng(seed)
    frame = make_table(150, n_series=2, seed=seed)
    base, changed_path = tmp_path / "base.parquet", tmp_path / "changed.parquet"
    frame.to_parquet(base)
    target = "close" if task == "regression" else "up"
    overrides = ["data.seq_length=10", "data.horizon=2", f"data.target={target}"]
    if task == "classification":
        overrides.append("data.horizon=1")
    for scaler in ("none", "standard"):
        data, before = windows(base, task, *overrides, f"data.scaler={scaler}")
        # With a train-fitted scaler, rows after a training window's end are themselves training
        # rows and move the scaler by design; validation/test windows must not move at all.
        splits = ("train", "val", "test") if scaler == "none" else ("val", "test")
        for split in splits:
            ends, x_before, _ = before[split]
            for i in rng.choice(len(ends), size=min(4, len(ends)), replace=False):
                t = ends[i]
                perturb_after(frame, data.times[t], rng).to_parquet(changed_path)
                _, after = windows(changed_path, task, *overrides, f"data.scaler={scaler}")
                ends_after, x_after, _ = after[split]
                j = np.flatnonzero(ends_after == t)
                assert len(j) == 1, "the window ending at t must still exist"
                np.testing.assert_array_equal(x_after[j[0]], x_before[i])


@pytest.mark.parametrize("horizon,steps", [(1, 1), (3, 1), (2, 4)])
def test_regression_label_is_the_target_at_t_plus_h(tmp_path, horizon, steps):
    frame = make_table(200, n_series=2, seed=1)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data, wins = windows(path, "regression", "data.seq_length=7", f"data.horizon={horizon}",
                         f"data.output_steps={steps}")
    close = frame.sort_values(["symbol", "time"], kind="stable")["close"].to_numpy()
    for ends, _, y in wins.values():
        expected = close[ends[:, None] + np.arange(horizon, horizon + steps)]
        np.testing.assert_allclose(data.target_scaler.inverse(y), expected, rtol=1e-5, atol=1e-4)


def test_horizon_zero_takes_the_label_from_the_end_row_and_hides_it_from_inputs(tmp_path):
    frame = make_table(200, seed=2)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data, wins = windows(path, "classification", "data.target=up", "data.horizon=0",
                         "data.seq_length=5")
    assert "up" not in data.input_names
    for ends, _, y in wins.values():
        assert (np.asarray(data.classes)[y] == frame["up"].to_numpy()[ends]).all()


def test_target_history_is_an_input_up_to_the_end_row(tmp_path):
    frame = make_table(120, seed=3)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data, wins = windows(path, "regression", "data.seq_length=6", "data.scaler=none")
    column = data.input_names.index("close")
    ends, x, _ = wins["train"]
    np.testing.assert_allclose(x[:, -1, column], frame["close"].to_numpy()[ends], rtol=1e-6)


def test_scaler_statistics_are_those_of_training_rows_alone(tmp_path):
    frame = make_table(300, n_series=2, seed=4)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = read_table(data_cfg(path), "regression", str(path))
    saved = data.state.to_dict()
    val_start = np.datetime64(saved["split"]["val_start"])
    train = frame[frame["time"] < val_start]
    expected = train[data.input_names].to_numpy(np.float64)
    np.testing.assert_allclose(saved["scaler"]["mean"], expected.mean(0), rtol=1e-5)
    np.testing.assert_allclose(saved["scaler"]["std"], expected.std(0), rtol=1e-4)
    np.testing.assert_allclose(saved["target_scaler"]["mean"], [train["close"].mean()], rtol=1e-6)

    # and validation/test rows have no say in them
    wild = frame.copy()
    wild.loc[wild["time"] >= val_start, ["ret", "vol", "rsi", "close"]] *= 1000.0
    wild.to_parquet(tmp_path / "wild.parquet")
    again = read_table(data_cfg(tmp_path / "wild.parquet"), "regression", str(tmp_path / "wild.parquet"))
    assert again.state.to_dict()["scaler"] == saved["scaler"]
    assert again.state.to_dict()["target_scaler"] == saved["target_scaler"]


def test_class_list_and_weights_come_from_training_rows(tmp_path):
    frame = make_table(300, seed=5)
    frame["up"] = np.where(np.arange(300) < 150, 0, 1)  # training sees 0 and 1 ...
    frame.loc[frame.index[:100], "up"] = 1
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = read_table(data_cfg(path, "data.target=up", "data.horizon=0"), "classification", str(path))
    assert data.classes == [0, 1]
    train_labels = frame["up"].to_numpy()[data.ends["train"]]
    counts = np.bincount(train_labels, minlength=2)
    np.testing.assert_allclose(data.class_weights, counts.sum() / (2 * counts))


def test_split_by_dates_purges_labels_at_each_boundary(tmp_path):
    frame = make_table(300, n_series=2, seed=6)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data, wins = windows(path, "regression", "data.split.val_start=2022-07-01",
                         "data.split.test_start=2022-09-01", "data.horizon=3",
                         "data.output_steps=2", "data.seq_length=10")
    last_label = {split: data.times[ends + 3 + 1] for split, (ends, _, _) in wins.items()}
    first_end = {split: data.times[ends] for split, (ends, _, _) in wins.items()}
    assert (last_label["train"] < np.datetime64("2022-07-01")).all()
    assert (first_end["val"] >= np.datetime64("2022-07-01")).all()
    assert (last_label["val"] < np.datetime64("2022-09-01")).all()
    assert (first_end["test"] >= np.datetime64("2022-09-01")).all()
    assert data.state.to_dict()["split"]["val_start"].startswith("2022-07-01")


def test_target_listed_as_a_feature_is_an_input_even_without_target_as_input(tmp_path):
    frame = make_table(120, seed=7)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data, _ = windows(path, "regression", "data.features=[ret,close]", "data.target_as_input=false")
    assert data.input_names == ["ret", "close"]


def test_only_known_future_columns_are_read_beyond_the_window_end(tmp_path):
    """Decoders may read known-in-advance columns (here ``rsi`` and the calendar) at the label
    rows; changing any other column after row t changes nothing a model receives, or outputs."""
    import torch

    from seqtrain.models.registry import MODELS, build_model

    rng = np.random.default_rng(8)
    frame = make_table(200, n_series=2, seed=8)
    frame["time"] = np.tile(pd.date_range("2022-01-03", periods=200, freq="h"), 2)
    base, changed_path = tmp_path / "base.parquet", tmp_path / "changed.parquet"
    frame.to_parquet(base)
    overrides = ["data.known_future=[rsi]", "data.time_features=true", "data.horizon=2",
                 "data.output_steps=3", "data.seq_length=12"]

    def batches(path):
        data = read_table(data_cfg(path, *overrides), "regression", str(path))
        module = SeqDataModule(data, batch_size=64)
        return data, {split: d.__getitems__(list(range(len(d)))) for split, d in module.datasets.items()}

    data, before = batches(base)
    assert data.known_future[0] == "rsi" and "hour_sin" in data.known_future
    torch.manual_seed(0)
    models = {name: build_model(name, {}, len(data.input_names), 1, 3, len(data.known_future)).eval()
              for name in MODELS}
    for split in ("val", "test"):
        ends = data.ends[split]
        for i in rng.choice(len(ends), size=3, replace=False):
            later = frame["time"] > data.times[ends[i]]
            unknown = frame.copy()
            unknown.loc[later, ["ret", "vol", "close"]] = rng.normal(0, 50, (later.sum(), 3))
            unknown.loc[later, "up"] = rng.integers(0, 2, later.sum())
            unknown.to_parquet(changed_path)
            _, after = batches(changed_path)
            for key in ("x", "future"):
                torch.testing.assert_close(after[split][key][i], before[split][key][i])
            with torch.no_grad():
                for name, model in models.items():
                    torch.manual_seed(0)
                    out_before = model(before[split]["x"][i: i + 1], future=before[split]["future"][i: i + 1])
                    torch.manual_seed(0)
                    out_after = model(after[split]["x"][i: i + 1], future=after[split]["future"][i: i + 1])
                    torch.testing.assert_close(out_after, out_before, msg=name)

            known = frame.copy()
            known.loc[later, "rsi"] = rng.uniform(0, 100, later.sum())
            known.to_parquet(changed_path)
            _, after = batches(changed_path)
            torch.testing.assert_close(after[split]["x"][i], before[split]["x"][i])
            rsi = data.known_future.index("rsi")
            assert not torch.equal(after[split]["future"][i][:, rsi], before[split]["future"][i][:, rsi])


def test_future_holds_the_known_columns_at_the_label_rows(tmp_path):
    frame = make_table(150, seed=9)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = read_table(data_cfg(path, "data.known_future=[rsi]", "data.scaler=none", "data.horizon=2",
                            "data.output_steps=2", "data.seq_length=5"), "regression", str(path))
    dataset = SeqDataModule(data, 8).datasets["train"]
    batch = dataset.__getitems__(list(range(len(dataset))))
    rows = data.ends["train"][:, None] + np.array([2, 3])
    np.testing.assert_allclose(batch["future"][..., 0].numpy(), frame["rsi"].to_numpy()[rows], rtol=1e-6)


def test_calendar_features_keep_the_cycles_that_vary():
    from seqtrain.data.time_features import calendar_features

    daily = pd.date_range("2022-01-01", periods=400, freq="D").to_numpy()
    values, names = calendar_features(daily)
    assert names == ["weekday_sin", "weekday_cos", "monthday_sin", "monthday_cos", "month_sin", "month_cos"]
    assert values.shape == (400, 6) and np.abs(values).max() <= 1
    weekday = np.arctan2(values[:, 0], values[:, 1]) % (2 * np.pi) * 7 / (2 * np.pi)
    np.testing.assert_allclose(weekday.round(), pd.DatetimeIndex(daily).weekday % 7, atol=1e-4)


def test_static_codes_do_not_change_when_later_rows_or_series_change(tmp_path):
    """Static columns and the series id (``data.static``, ``model.series_embedding``): a window
    of validation or test reads the same codes and scaled statics however the rows after it
    change, a new series with a new level among them (levels sorting before the known ones)."""
    rng = np.random.default_rng(0)
    frame = make_table(150, n_series=3)
    frame["sector"] = frame["symbol"].map({"SYM0": "tech", "SYM1": "energy", "SYM2": "tech"})
    frame["size"] = frame["symbol"].str[-1].astype(float)
    base, changed_path = tmp_path / "base.parquet", tmp_path / "changed.parquet"
    frame.to_parquet(base)
    def prepared(path):
        data = read_table(data_cfg(path, "data.seq_length=10", "data.static=[sector,size]"), "regression",
                          str(path), series_embedding=True)
        module = SeqDataModule(data, batch_size=64)
        out = {}
        for split in ("val", "test"):
            dataset = module.datasets[split]
            batch = dataset.__getitems__(list(range(len(dataset))))
            out[split] = (data.series[data.ends[split]], data.times[data.ends[split]], batch["x"].numpy())
        return data, out

    data, before = prepared(base)
    assert data.state.code_columns == [5, 6]  # sector:code, symbol:series after ret vol rsi up size
    for split in ("val", "test"):
        series, times, x_before = before[split]
        for i in rng.choice(len(series), size=3, replace=False):
            t = times[i]
            changed = perturb_after(frame, t, rng)
            newcomer = changed[(changed.symbol == "SYM0") & (changed.time > t)].assign(
                symbol="AAA", sector="aaa", size=-50.0)  # sorts first by name and by level
            pd.concat([changed, newcomer], ignore_index=True).to_parquet(changed_path)
            after_data, after = prepared(changed_path)
            names = np.asarray(after_data.state.series_names)[after[split][0]]
            j = np.flatnonzero((names == data.state.series_names[series[i]]) & (after[split][1] == t))
            assert len(j) == 1, "the window ending at t must still exist"
            np.testing.assert_array_equal(after[split][2][j[0]], x_before[i])
