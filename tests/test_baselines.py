"""Baselines, skill and intervals beside every result: the numbers a user compares first."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from seqtrain.data.datamodule import SeqDataModule
from seqtrain.data.loading import load_data
from seqtrain.engine.module import SeqModule
from seqtrain.report.baselines import (
    baseline_predictions,
    block_bootstrap,
    compare_with_baselines,
    dlinear_predictions,
    dlinear_recorder,
    fit_dlinear,
    fit_last_row_model,
    last_row_predictions,
    moving_average_matrix,
    pooled_skill,
    skill_report,
    window_losses,
)
from seqtrain.run.walk_forward import pooled_notes
from tests.conftest import TINY
from tests.helpers import make_table


def test_block_bootstrap_pairs_the_draws():
    rng = np.random.default_rng(0)
    losses = rng.random(500)
    draws = block_bootstrap({"a": losses, "b": losses + 1.0}, block=20)
    np.testing.assert_allclose(draws["b"] - draws["a"], 1.0)  # the same blocks for both
    assert draws["a"].std() > 0


def test_block_bootstrap_widens_the_interval_of_autocorrelated_losses():
    # runs of 50 equal values: i.i.d. resampling would think it has 20x more information
    losses = np.repeat(np.random.default_rng(1).random(40) > 0.5, 50).astype(float)
    single = block_bootstrap({"x": losses}, block=1)["x"].std()
    blocks = block_bootstrap({"x": losses}, block=50)["x"].std()
    assert blocks > 3 * single


def test_skill_report_says_beats_only_beyond_the_interval():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, 2000)
    coin = rng.integers(0, 2, 2000)
    good = np.where(rng.random(2000) < 0.8, truth, 1 - truth)
    baseline = {"coin": window_losses("classification", truth, coin)}
    clear = skill_report("classification", "test_acc", window_losses("classification", truth, good), baseline)
    assert clear["beats_best_baseline"] and clear["skill"] > 0.5
    low, high = clear["interval"]
    assert low < clear["value"] < high and 0.75 < clear["value"] < 0.85
    other_coin = rng.integers(0, 2, 2000)
    tie = skill_report("classification", "test_acc", window_losses("classification", truth, other_coin),
                       baseline)
    assert not tie["beats_best_baseline"]
    assert tie["improvement_interval"][0] < 0 < tie["improvement_interval"][1]


def test_persistence_only_where_the_last_label_is_known():
    y_last = np.array([0, 1, -1])  # -1: the window's series does not reach back to a known label
    guesses, notes = baseline_predictions("classification", y_last, 1, y_last)
    assert guesses["persistence"].tolist() == [0, 1, 1] and "1 of 3 windows" in notes["persistence"]
    # no label known at the window's end (horizon 0, no embargo): no such baseline, nothing in its place
    guesses, notes = baseline_predictions("regression", None, 5.0, np.zeros((3, 2)))
    assert set(guesses) == {"train_mean", "last_row_linear"} and not notes


def test_last_row_models_learn_what_the_last_row_shows():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 3))
    y = (x[:, 1] > 0.2).astype(int)
    weights = fit_last_row_model("classification", x, y, 2)
    assert (last_row_predictions("classification", weights, x) == y).mean() > 0.95
    target = np.column_stack([2 * x[:, 0] - x[:, 2], x[:, 1]])
    weights = fit_last_row_model("regression", x, target)
    np.testing.assert_allclose(last_row_predictions("regression", weights, x), target, atol=0.02)


@pytest.fixture
def random_walk(tmp_path):
    """Bars whose next move no input can tell: the features are noise and the label a coin."""
    path = tmp_path / "walk.parquet"
    make_table(1500, n_series=2, seed=7).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("model", ["lstm", "tcn"])
def test_on_a_random_walk_no_model_beats_the_baselines(run_cli, random_walk, model):
    result = run_cli(f"model={model}", "data=parquet", f"data.path={random_walk}", "data.target=up",
                     "data.group_col=symbol", "data.horizon=0", "data.features=[ret,vol,rsi]",
                     "data.embargo=1", "data.seq_length=16", "trainer.max_epochs=3", "progress_bar=false",
                     "plots=false")
    assert result.code == 0, result.err
    metrics = result.metrics()
    skill = metrics["skill"]
    assert skill["metric"] == "test_acc" and not skill["beats_best_baseline"], skill
    # horizon 0 with embargo 1: the label one row back is known at the window's end
    assert set(skill["baselines"]) == {"majority", "persistence", "last_row_logistic"}
    assert metrics["baseline_test"]["majority_acc"] == pytest.approx(skill["baselines"]["majority"])
    assert "skill vs" in result.out and "95% interval" in result.out


def test_seasonal_naive_baseline_with_eval_season(run_cli, tmp_path):
    hours = np.arange(1200)
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"time": pd.date_range("2024-01-01", periods=len(hours), freq="h"),
                          "load": 10 + 3 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.1, len(hours)),
                          "noise": rng.normal(size=len(hours))})
    path = tmp_path / "load.parquet"
    table.to_parquet(path, index=False)
    result = run_cli("data=parquet", f"data.path={path}", "data.target=load", "task=regression",
                     "data.output_steps=3", "data.seq_length=12", "eval.season=24", "model.hidden_size=8",
                     "trainer.max_epochs=1", "progress_bar=false", "plots=false")
    assert result.code == 0, result.err
    baselines = result.metrics()["baseline_test"]
    # yesterday's value at the same hour is off by the noise alone; persistence by the cycle
    assert baselines["seasonal_naive_mae"] < 0.2 < baselines["persistence_mae"]
    assert result.metrics()["skill"]["baselines"]["seasonal_naive"] == pytest.approx(
        baselines["seasonal_naive_mae"])


def test_eval_season_must_be_a_period(run_cli):
    result = run_cli("eval.season=0", "progress_bar=false", "plots=false")
    assert result.code == 2 and "eval.season: 0" in result.err



# -- every baseline is what its name says: hand-computed on a tiny table ----------------------------

VAL_START, TEST_START, SEASON = 10, 19, 20
SEQ_LENGTH = 2
# how a case is read: (streamed, row group size, B's first time, eval.season). With small row
# groups and B listed early the first chunk read starts inside every series, so the rows a move
# label moves from, behind the earliest label a window reads, must be read too
READS = {"memory": (False, 5, 17, SEASON), "streamed": (True, 5, 17, SEASON),
         "streamed-small": (True, 2, 3, 4)}
LABEL_CASES = [("regression", "value"), ("regression", "return"), ("regression", "log_return"),
               ("classification", "value"), ("classification", "direction")]
CASES = [(task, label, h, k, e) for task, label in LABEL_CASES for h in (0, 1, 3)
         for k in ((1, 3) if task == "regression" else (1,)) for e in (0, 2)
         if not (label != "value" and h == 0)]


def tiny_table(listed: int = 17) -> pd.DataFrame:
    """Two series by integer time, rows interleaved: A at 0..29; B listed late (from ``listed``)
    and missing time 22, so that a row back is not a time step back and (listed at 17) B's first
    test windows have no move behind them."""
    frames = []
    for s, times in enumerate([np.arange(30), np.r_[listed:22, 23:30]]):
        frames.append(pd.DataFrame({
            "time": times, "symbol": f"S{s}", "f1": np.cos(1.3 * times + s),
            "price": 50 + 3 * np.sin(0.9 * times + s) + 0.1 * times,  # no move is ever zero
            "regime": (times * 5 + s) % 3,
        }))
    return pd.concat(frames).sort_values(["time", "symbol"], kind="stable").reset_index(drop=True)


def hand_labels(part: pd.DataFrame, target: str, label: str, h: int) -> np.ndarray:
    """The label of each row of one series: the target itself, or its move over the h rows up
    to the row (direction: 1 up, 0 down; NaN where the series has no row h back)."""
    values = part[target].to_numpy(float)
    if label == "value":
        return values
    before = np.r_[np.full(h, np.nan), values[:-h]]
    ratio = values / before
    return {"return": ratio - 1, "log_return": np.log(ratio),
            "direction": np.where(np.isnan(ratio), np.nan, ratio > 1)}[label]


def hand_case(task: str, label: str, h: int, k: int, e: int, test_windows: list, listed: int = 17,
              season: int = SEASON) -> dict:
    """From the table alone: the training windows (last input row, first label), and each test
    window's persistence (the label ``lag`` rows back in its series: 0 with a horizon, e with
    horizon 0, none without an embargo) and seasonal naive (each label row's value whole seasons
    back, at or before that row), with the fallback where a series does not reach back."""
    table = tiny_table(listed)
    target = "regime" if (task, label) == ("classification", "value") else "price"
    parts = {s: part.reset_index(drop=True) for s, part in table.groupby("symbol")}
    labels = {s: hand_labels(part, target, label, h) for s, part in parts.items()}
    train = [(s, t) for s, part in parts.items() for t in range(1, len(part) - h - k + 1)
             if part["time"].iloc[t + h + k - 1] < VAL_START]  # inputs at rows >= 0, labels in training
    lag = 0 if h >= 1 else (e if e >= 1 else None)
    if task == "regression":
        fallback = np.nanmean(np.concatenate([labels[s][parts[s]["time"] < VAL_START] for s in parts]))
    else:
        values, counts = np.unique([labels[s][t + h] for s, t in train], return_counts=True)
        fallback = values[np.argmax(counts)]
    out = {"train": train, "fallback": fallback, "persistence": [], "seasonal_naive": [], "filled": set(),
           "parts": parts, "train_y": [labels[s][t + h:t + h + k] for s, t in train],
           "train_history": [hand_history(labels[s], t, lag) for s, t in train],
           "history": [hand_history(labels[s], t, lag) for s, t in test_windows]}
    if task == "regression" and lag is not None and any(np.isnan(x).any() for x in out["history"]):
        out["filled"].add("dlinear")
    for s, t in test_windows:
        y = labels[s]
        latest = None if lag is None or t - lag < 0 or np.isnan(y[t - lag]) else y[t - lag]
        if lag is not None and latest is None:
            out["filled"].add("persistence")
        persistence = fallback if latest is None else latest
        out["persistence"].append([persistence] * k)
        seasonal = []
        for o in range(h, h + k):
            back = t + o - season * max(-(-(o + (lag or 0)) // season), 1)
            reaches = back >= 0 and not np.isnan(y[back])
            seasonal.append(y[back] if reaches else persistence)
            if not reaches and task == "regression" and lag is not None:
                out["filled"].add("seasonal_naive")
        out["seasonal_naive"].append(seasonal)
    return out


def hand_history(y: np.ndarray, t: int, lag: int | None, length: int = SEQ_LENGTH) -> list[float]:
    """The labels known at row t that DLinear reads, oldest first: the ``length`` rows up to
    ``lag`` rows back, in the window's own series (NaN before its first row)."""
    if lag is None:
        return []
    rows = t - lag - np.arange(length - 1, -1, -1)
    return [y[r] if r >= 0 else np.nan for r in rows]


@functools.cache
def _data_config():
    from hydra import compose, initialize_config_module

    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        cfg = compose("config", overrides=[
            "data=parquet", "data.path=unset", "data.target=unset", "data.group_col=symbol",
            "data.features=[f1]", f"data.seq_length={SEQ_LENGTH}", f"data.split.val_start={VAL_START}",
            f"data.split.test_start={TEST_START}", "data.leakage_audit=off"])
    return cfg.data


def data_config():
    """The tiny table's data settings, composed once (a fresh copy each time)."""
    return copy.deepcopy(_data_config())


def run_case(tmp_path, task, label, h, k, e, read="memory"):
    """The run's own path on the tiny table, read as ``READS[read]``: data, windows, the
    module's test records (the network's forecast a dummy) and ``compare_with_baselines``."""
    streaming, group_rows, listed, season = READS[read]
    path = tmp_path / "tiny.parquet"
    tiny_table(listed).to_parquet(path, index=False, row_group_size=group_rows)  # streamed: chunks carry rows
    cfg = data_config()
    target = "regime" if (task, label) == ("classification", "value") else "price"
    settings = {"path": str(path), "target": target, "horizon": h, "output_steps": k, "embargo": e,
                "label": label, "streaming": str(streaming).lower()}
    for key, value in settings.items():
        cfg[key] = value
    data = load_data(cfg, task, str(path))
    module = SeqDataModule(data, batch_size=7, season=season)
    readout = (lambda out: {"probs": out}) if task == "classification" else (lambda out: {"pred": out})
    train = module.last_rows("train", size=20_000)
    stub = SimpleNamespace(readout=readout, history_baselines=dlinear_recorder(train))  # as train.py sets it
    width = len(data.state.classes) if task == "classification" else k
    records = [SeqModule.prediction_record(stub, batch, torch.zeros(len(batch["y"]), width))
               for batch in module.test_dataloader()]
    return data.state, records, train, compare_with_baselines(data.state, records, train, 0, season)


def sorted_rows(rows: np.ndarray) -> np.ndarray:
    """Rows in one order whatever order they came in (streamed training windows are shuffled)."""
    rows = np.asarray(rows, np.float64).reshape(len(rows), -1)
    return rows[np.lexsort(rows.round(5).T[::-1])]  # sorted by rounded keys, compared unrounded


@pytest.fixture
def one_thread():
    """Tiny tensors: a second thread only spins (L-BFGS on a few windows 50x slower on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("read", list(READS))
@pytest.mark.parametrize("task,label,h,k,e", CASES)
def test_every_baseline_is_what_its_name_says(tmp_path, one_thread, task, label, h, k, e, read):
    state, records, train, (baseline_test, skill, columns, notes) = run_case(
        tmp_path, task, label, h, k, e, read)
    streaming, _, listed, season = READS[read]
    names = state.series_names
    test = [(names[s], r) for record in records for s, r in record["window"].tolist()]
    hand = hand_case(task, label, h, k, e, test, listed, season)
    known = h >= 1 or e >= 1
    expected = ({"majority", "last_row_logistic"} if task == "classification"
                else {"train_mean", "last_row_linear"})
    # DLinear needs more whole training histories than it has coefficients (2L + 1)
    whole = sum(bool(np.isfinite(np.r_[x, y]).all()) for x, y in zip(hand["train_history"], hand["train_y"],
                                                                  strict=True))
    fits = task == "regression" and known and whole > 2 * SEQ_LENGTH + 1
    if known:
        expected |= {"persistence"} | ({"seasonal_naive"} if task == "regression" else set())
    expected |= {"dlinear"} if fits else set()
    assert {c.removeprefix("baseline_") for c in columns} == expected
    assert set(skill["baselines"]) == expected
    if not known:  # never another forecast under persistence's name
        assert "not known at the window's end with horizon=0 and no embargo" in notes["persistence"]
        assert not any(name.startswith("persistence") for name in baseline_test)
    filled = {name for name, note in notes.items() if "windows' series" in note}
    assert filled == hand["filled"] - (set() if fits else {"dlinear"}), notes

    if task == "classification":
        decode = (lambda v: str(int(v))) if label == "value" else (lambda v: "up" if v else "down")
        as_names = lambda column: [str(v) for v in column]  # noqa: E731
        assert as_names(columns["baseline_majority"]) == [decode(hand["fallback"])] * len(test)
        if known:
            assert as_names(columns["baseline_persistence"]) == [decode(p[0]) for p in hand["persistence"]]
    else:
        np.testing.assert_allclose(columns["baseline_train_mean"], hand["fallback"], rtol=1e-6)
        for name in ("persistence", "seasonal_naive") if known else ():
            np.testing.assert_allclose(columns[f"baseline_{name}"], np.ravel(hand[name]),
                                       rtol=1e-5, atol=1e-7)

    # the last-row model: fit on the training windows alone, their last input rows read by hand
    parts = hand["parts"]
    raw = lambda s, t: [parts[s][c].iloc[t] for c in state.inputs]  # noqa: E731
    x_train = state.scaler.transform(np.array([raw(s, t) for s, t in hand["train"]], np.float64))
    x_test = state.scaler.transform(np.array([raw(s, t) for s, t in test], np.float64))
    if task == "classification":
        class_of = {str(c): i for i, c in enumerate(state.classes)}
        y_train = np.array([class_of[decode(y[0])] for y in hand["train_y"]])
    else:
        y_train = state.target_scaler.transform(np.array(hand["train_y"]).reshape(-1)).reshape(-1, k)
    np.testing.assert_allclose(sorted_rows(np.column_stack([train["x_last"].numpy(), train["y"].numpy()])),
                               sorted_rows(np.column_stack([x_train, y_train])), rtol=1e-5, atol=1e-6)
    if task == "classification" and not streaming:  # streamed training windows come shuffled
        weights = fit_last_row_model(task, x_train, y_train, len(state.classes))
        guess = np.asarray(state.classes, dtype=object)[last_row_predictions(task, weights, x_test)]
        assert as_names(columns["baseline_last_row_logistic"]) == as_names(guess)
    elif task == "regression":
        weights = fit_last_row_model(task, x_train, y_train)
        guess = state.target_scaler.inverse(last_row_predictions(task, weights, x_test))
        np.testing.assert_allclose(columns["baseline_last_row_linear"], guess.reshape(-1),
                                   rtol=1e-4, atol=1e-5)
    if fits:  # DLinear: the known labels' history, read by hand, fit on training windows
        scaled = lambda rows: state.target_scaler.transform(  # noqa: E731
            np.array(rows, np.float64).reshape(-1)).reshape(len(rows), -1)
        weights = fit_dlinear(scaled(hand["train_history"]), y_train)
        guess = state.target_scaler.inverse(dlinear_predictions(weights, scaled(hand["history"])))
        np.testing.assert_allclose(columns["baseline_dlinear"], guess.reshape(-1), rtol=1e-4, atol=1e-5)


def test_a_look_ahead_target_gets_no_persistence_without_an_embargo(run_cli, tmp_path, one_thread):
    """The README's pipeline case: y = tomorrow's close, known at t, trained with horizon 0."""
    table = make_table(240, n_series=1, seed=3)
    table["next_close"] = table["close"].shift(-1).ffill()
    path = tmp_path / "next.parquet"
    table.to_parquet(path, index=False)
    common = ["data=parquet", f"data.path={path}", "data.target=next_close", "task=regression",
              "data.horizon=0", "data.features=[ret,vol,close]", "data.seq_length=8", "model.hidden_size=8",
              "model.num_layers=1", "trainer.max_steps=1", "progress_bar=false", "plots=false"]
    blind = run_cli(*common, "data.embargo=0")
    assert blind.code == 0, blind.err
    metrics = blind.metrics()
    assert "not known at the window's end" in metrics["baseline_notes"]["persistence"]
    assert "persistence" not in metrics["skill"]["baselines"]
    assert not any(name.startswith("persistence") for name in metrics["baseline_test"])
    assert "skill vs persistence" not in blind.out and "not known at the window" in blind.out
    # with data.embargo=1 (the label reads one row ahead) persistence is the label one row back
    told = run_cli(*common, "data.embargo=1")
    assert told.code == 0, told.err
    predictions = pd.read_parquet(told.run_dir / "predictions.parquet")
    by_time = table.set_index("time")["next_close"]
    previous = by_time.shift(1).loc[predictions["window_end"]].to_numpy()
    np.testing.assert_allclose(predictions["baseline_persistence"], previous, rtol=1e-5)
    assert told.metrics()["baseline_test"]["persistence_mae"] == pytest.approx(
        np.abs(previous - predictions["y_true"]).mean(), rel=1e-4)


def test_the_seasonal_note_names_what_its_windows_take():
    last_row = np.zeros((3, 1))
    # the first window reaches back to neither: persistence is the training mean, and so is seasonal
    guesses, notes = baseline_predictions("regression", np.array([np.nan, 2.0, 4.0]), 5.0, last_row,
                                          np.array([np.nan, 3.0, 1.0]))
    assert guesses["seasonal_naive"].ravel().tolist() == [5.0, 3.0, 1.0]
    assert notes["seasonal_naive"] == ("1 of 3 windows' series do not reach back far enough; "
                                       "those take the training mean")
    guesses, notes = baseline_predictions("regression", np.array([np.nan, 2.0, 4.0]), 5.0, last_row,
                                          np.array([np.nan, np.nan, 1.0]))
    assert guesses["seasonal_naive"].ravel().tolist() == [5.0, 2.0, 1.0]
    assert notes["seasonal_naive"].endswith("those take persistence, or the training mean where "
                                            "persistence is not known either (1 of them)")
    guesses, notes = baseline_predictions("regression", np.array([1.0, 2.0, 4.0]), 5.0, last_row,
                                          np.array([np.nan, 3.0, 1.0]))
    assert notes["seasonal_naive"].endswith("those take persistence") and "persistence" not in notes


def test_the_embargo_key_says_how_persistence_reads_it():
    """With horizon 0 the embargo is also how far the label reads ahead: its config comment says so."""
    import seqtrain

    text = (Path(seqtrain.__file__).parent / "conf" / "data" / "parquet.yaml").read_text()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("embargo:"))
    comment = " ".join(line.split("#", 1)[1] for line in lines[at:at + 2] if "#" in line)
    assert "horizon: 0" in comment and "reads ahead" in comment and "persistence" in comment


def test_a_walk_forward_run_says_which_baselines_its_folds_left_out(run_cli, one_thread):
    result = run_cli(*TINY, "trainer.max_steps=1", "data.generator.length=200", "data.seq_length=8",
                     "data.horizon=0", "eval=walk_forward", "eval.folds=2", "eval.test_size=0.15")
    assert result.code == 0, result.err
    metrics = result.metrics()
    note = metrics["baseline_notes"]["persistence"]  # every fold's own note, once
    assert note.startswith("not known at the window's end with horizon=0 and no embargo")
    assert "persistence" not in metrics["pooled"]["baselines"]
    assert f"baseline persistence: {note[:40]}" in " ".join(result.out.split())


def test_pooled_notes_keep_each_folds_own():
    folds = [{"persistence": "left out"}, {"persistence": "left out", "seasonal_naive": "2 of 9 filled"}]
    assert pooled_notes(folds) == {"persistence": "left out", "seasonal_naive": "fold 1: 2 of 9 filled"}
    assert pooled_notes([{"a": "x"}, {"a": "y"}]) == {"a": "fold 0: x; fold 1: y"}


@pytest.mark.parametrize("length", [2, 16, 25, 168])
def test_the_trend_is_dlinears_moving_average(length):
    """DLinear's series_decomp: a centred average of 25 rows, the first and last rows repeated
    beyond the window's ends (AvgPool1d over the padded window)."""
    history = torch.randn(5, length, dtype=torch.float64)
    half = 12
    padded = torch.cat([history[:, :1].repeat(1, half), history, history[:, -1:].repeat(1, half)], 1)
    trend = torch.nn.functional.avg_pool1d(padded[:, None], 25, stride=1)[:, 0]
    np.testing.assert_allclose(history.numpy() @ moving_average_matrix(length).T, trend.numpy(), atol=1e-12)


def test_dlinear_recovers_a_linear_forecast_and_fills_short_series():
    """Labels that are a linear function of the last 8 known labels: the closed-form fit
    forecasts them (no noise, so nearly exactly); a window whose series starts inside it reads
    its earliest known label before it, and is flagged."""
    rng = np.random.default_rng(0)
    history = rng.normal(size=(2000, 8))
    coefficients = rng.normal(size=(8, 3))
    y = history @ coefficients + 0.5
    weights = fit_dlinear(history, y)
    probe = rng.normal(size=(50, 8))
    np.testing.assert_allclose(dlinear_predictions(weights, probe), probe @ coefficients + 0.5, atol=0.05)
    short = probe.copy()
    short[0, :3] = np.nan
    filled = probe[0].copy()
    filled[:3] = probe[0, 3]
    np.testing.assert_allclose(dlinear_predictions(weights, short)[0], filled @ weights[:-1] + weights[-1])
    record = dlinear_recorder({"y_history": torch.from_numpy(history), "y": torch.from_numpy(y)})(
        torch.from_numpy(short))
    assert record["dlinear_short"].tolist() == [True] + [False] * 49
    assert fit_dlinear(history[:17], y[:17]) is None  # no more windows than coefficients: no fit


def test_streamed_training_windows_are_spread_over_the_split_like_in_memory(tmp_path, one_thread):
    """The baselines' training sample (the last-row models, DLinear, the audit) when the split
    holds more windows than asked for: stored series by series and streamed, the first windows
    alone would be the first series' only; every k-th is taken instead, as in memory."""
    table = tiny_table(0).sort_values(["symbol", "time"], kind="stable")
    path = tmp_path / "by_series.parquet"
    table.to_parquet(path, index=False, row_group_size=5)
    cfg = data_config()
    for key, value in {"path": str(path), "target": "price", "horizon": 1, "output_steps": 1}.items():
        cfg[key] = value
    for streaming in (False, True):
        cfg["streaming"] = str(streaming).lower()
        data = load_data(cfg, "regression", str(path))
        # a shuffle buffer small beside the split, as on a big table
        module = SeqDataModule(data, batch_size=7, shuffle_buffer=7)
        total = len(module.last_rows("train", size=20_000)["y"])
        rows = module.last_rows("train", size=total // 3)
        assert 0 < len(rows["y"]) <= total // 3
        scaler = data.state.scaler  # f1 = cos(1.3 t + s): the two series' values never meet
        second = table[table["symbol"] == "S1"]["f1"].to_numpy()
        second = set(np.round((second - scaler.mean[0]) / scaler.std[0], 4))
        sampled = set(np.round(rows["x_last"][:, 0].numpy().astype(np.float64), 4))
        assert sampled & second and sampled - second, (streaming, sampled)  # both series


def test_a_baseline_a_fold_left_out_is_left_out_of_the_pooled_skill():
    """DLinear cannot be fit in a fold with too few training windows: its rows of that fold
    have no forecast, so it is not compared over the pooled windows (never a NaN error)."""
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"window_end": np.arange(n), "y_true": rng.normal(size=n)})
    frame["y_pred"] = frame["y_true"] + rng.normal(0, 0.1, n)
    frame["baseline_train_mean"] = 0.0
    frame["baseline_dlinear"] = np.where(np.arange(n) < 50, np.nan, frame["y_true"] * 0.5)
    skill = pooled_skill("regression", frame, None)
    assert set(skill["baselines"]) == {"train_mean"} and skill["best_baseline"] == "train_mean"
    assert all(np.isfinite(v) for v in skill["baselines"].values())
