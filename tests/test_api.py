"""The Python API: the command line's code path from a pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import seqtrain
from seqtrain import SeqtrainError, SequenceModel
from tests.conftest import TINY


def test_train_through_the_api_equals_the_command_line(run_cli, tmp_path):
    by_cli = run_cli(*TINY)
    assert by_cli.code == 0, by_cli.err
    run = seqtrain.train(TINY + ["progress_bar=false", "plots=false"], run_dir=tmp_path / "api")
    assert run.path == tmp_path / "api"
    assert run.metrics["test"] == by_cli.metrics()["test"]
    assert run.metrics["best_val"] == by_cli.metrics()["best_val"]
    assert (run.path / "train.log").exists() and (run.path / ".hydra" / "config.yaml").exists()
    again = seqtrain.load(run.path)
    table = pd.read_parquet(run.path / "data" / "synthetic.parquet")
    preds = again.predict(table, newest=True)
    assert len(preds) == 3 and {"symbol", "y_pred", "prob_0", "prob_1"} <= set(preds.columns)


@pytest.mark.parametrize("overrides, expected", [
    (["model=lsmt"], "model=lsmt: unknown model"),
    (["data.seq_lenght=5"], "data.seq_lenght: no such config key"),
    (["-m", "model=lstm"], "flags are for the command line"),
])
def test_bad_config_raises_one_seqtrain_error(tmp_path, overrides, expected):
    with pytest.raises(SeqtrainError, match=expected.replace(".", r"\.")):
        seqtrain.train(overrides, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_load_refuses_what_is_not_a_finished_run(tmp_path):
    with pytest.raises(SeqtrainError, match="is not a seqtrain run folder"):
        seqtrain.load(tmp_path)


def _frames(n_rows: int = 260, seed: int = 0):
    """X indexed by (time, symbol) with a planted signal: y is the sign of the next ``driver``
    move, which ``lead`` announces one row ahead."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(2):
        lead = rng.normal(size=n_rows)
        parts.append(pd.DataFrame({
            "time": pd.date_range("2022-01-01", periods=n_rows, freq="h"), "symbol": f"S{s}",
            "lead": lead, "noise": rng.normal(size=n_rows),
            "up": (np.roll(lead, 0) > 0).astype(int)}))
    frame = pd.concat(parts).set_index(["time", "symbol"]).sort_index()
    return frame[["lead", "noise"]], frame["up"]


def test_sequence_model_passes_plots_and_progress_bar_as_run_settings():
    """plots and progress_bar are the run's own keys, not model arguments (model.plots)."""
    overrides = SequenceModel(plots=np.bool_(False), progress_bar=False)._overrides()
    assert "plots=False" in overrides and "progress_bar=false" in overrides
    assert not any(o.startswith("model.plots") for o in overrides)


def test_sequence_model_fit_predict_save_load(tmp_path):
    X, y = _frames()
    cut = X.index.get_level_values("time") < pd.Timestamp("2022-01-09")
    model = SequenceModel("lstm", task="classification", seq_length=8, hidden_size=16, max_epochs=3,
                          progress_bar=False, run_dir=tmp_path / "run")
    assert model.fit(X[cut], y[cut]) is model
    proba = model.predict_proba(X[~cut])
    assert list(proba.columns) == ["0", "1"] and proba.index.equals(X[~cut].index)
    # the first 7 rows of each series have too little history for an 8-row window
    assert proba.isna().all(axis=1).sum() == 2 * 7
    filled = proba.dropna()
    np.testing.assert_allclose(filled.sum(axis=1), 1.0, rtol=1e-5)
    labels = model.predict(X[~cut])
    assert labels.index.equals(X[~cut].index)
    assert set(labels.dropna().unique()) <= {0, 1}

    saved = model.save(tmp_path / "saved")
    loaded = SequenceModel.load(saved)
    pd.testing.assert_frame_equal(loaded.predict_proba(X[~cut]), proba)
    with pytest.raises(SeqtrainError, match="exists and is not empty"):
        model.save(saved)


def test_sequence_model_with_validation_rows_and_one_line_errors(tmp_path):
    X, y = _frames()
    times = X.index.get_level_values("time")
    train, val = times < pd.Timestamp("2022-01-09"), times >= pd.Timestamp("2022-01-09")
    model = SequenceModel("tcn", task="regression", seq_length=8, num_channels=[8, 8], max_epochs=2,
                          progress_bar=False, run_dir=tmp_path / "run")
    model.fit(X[train], y[train].astype(float), X_val=X[val], y_val=y[val].astype(float))
    split = model.run_.data_state.fit_summary["split"]
    assert split["val_start"].startswith("2022-01-09")
    with pytest.raises(SeqtrainError, match="X_val must follow X in time"):
        SequenceModel("tcn", run_dir=tmp_path / "r2").fit(X[val], y[val], X_val=X[train], y_val=y[train])
    with pytest.raises(SeqtrainError, match="model.hidden_sise: no such config key"):
        SequenceModel("lstm", hidden_sise=3, max_epochs=1, run_dir=tmp_path / "r3").fit(X[train], y[train])
    with pytest.raises(SeqtrainError, match="not fitted"):
        SequenceModel("lstm").predict(X)
    with pytest.raises(SeqtrainError, match="y: a pandas Series"):
        SequenceModel("lstm").fit(X, y.to_numpy())
    with pytest.raises(SeqtrainError, match="X: a pandas DataFrame"):
        SequenceModel("lstm").fit(X.to_numpy(), y)


@pytest.fixture
def no_plots(monkeypatch):
    """Tiny fits without their plots (the slowest part of a tiny run, not what is checked here)."""
    from seqtrain.report import run as report

    for name in ("plot_curves", "plot_predictions", "plot_equity", "plot_interpretation"):
        monkeypatch.setattr(report, name, lambda *args, **kwargs: None)


ODD_NAMES = ["sma(5)", "ret,1d", "ret=1", "two words", "Δprice", "${x}", "[a]", "it's"]


def _odd_frames(tz: str | None = None, names: list[str] = ODD_NAMES, n_rows: int = 120):
    """Columns ``names`` on an hourly index across New York's change to summer time: in zone
    ``tz``, or as naive UTC times (the same instants)."""
    rng = np.random.default_rng(1)
    times = pd.date_range("2022-03-10", periods=n_rows, freq="h", tz="UTC", name="bar time")
    times = times.tz_convert(tz) if tz else times.tz_localize(None)
    X = pd.DataFrame(rng.normal(size=(n_rows, len(names))), columns=names, index=times)
    return X, pd.Series((np.roll(X[names[0]], -2) > 0).astype(int), index=times, name="up, 2 ahead")


TINY_FIT = {"seq_length": 8, "hidden_size": 8, "num_layers": 1, "max_epochs": 1, "progress_bar": False}


def test_sequence_model_takes_column_names_with_any_characters(tmp_path, no_plots):
    X, y = _odd_frames()
    model = SequenceModel("lstm", run_dir=tmp_path / "run", label_ahead=2, **TINY_FIT).fit(X, y)
    data = model.run_.config.data  # the run folder names them verbatim
    assert list(data.features) == ODD_NAMES and data.target == "up, 2 ahead" and data.time_col == "bar time"
    assert (data.horizon, data.embargo) == (0, 2)  # label_ahead=2: y[t] is known two rows after t
    assert list(model.feature_names_in_) == ODD_NAMES
    proba = model.predict_proba(X)
    assert proba.index.equals(X.index) and proba.notna().all(axis=1).sum() == len(X) - 7


def test_sequence_model_reads_a_tz_aware_index_as_utc(tmp_path, no_plots):
    """A tz-aware index trains and predicts exactly as its naive UTC times do."""
    X, y = _odd_frames("America/New_York", names=["a", "b"])
    aware = SequenceModel("lstm", run_dir=tmp_path / "aware", **TINY_FIT).fit(X, y.rename("up"))
    proba = aware.predict_proba(X)
    assert proba.index.equals(X.index) and aware.time_zone_ == "America/New_York"
    X_naive, y_naive = _odd_frames(None, names=["a", "b"])
    naive = SequenceModel("lstm", run_dir=tmp_path / "naive", **TINY_FIT).fit(X_naive, y_naive.rename("up"))
    np.testing.assert_array_equal(proba.to_numpy(), naive.predict_proba(X_naive).to_numpy())
    assert aware.run_.metrics["test"] == naive.run_.metrics["test"]
    in_tokyo = aware.predict(X.tz_convert("Asia/Tokyo"))  # the same instants, another zone
    np.testing.assert_array_equal(in_tokyo.to_numpy(), aware.predict(X).to_numpy())
    with pytest.raises(SeqtrainError, match="time index is tz-naive but the model was fit on tz-aware"):
        aware.predict(X_naive)


@pytest.mark.parametrize("settings, expected", [
    ({"label_ahead": 1, "horizon": 1}, "label_ahead=1: .* not data.horizon=1; drop horizon"),
    ({"label_ahead": 2, "embargo": 1}, r"label_ahead=2: needs data.embargo >= 2 .* not 1; drop embargo"),
    ({"label_ahead": 1, "overrides": ["data.horizon=3"]}, "not data.horizon=3"),
    ({"label_ahead": -1}, "label_ahead: -1; the rows after t"),
])
def test_label_ahead_refuses_a_conflicting_horizon_or_embargo(tmp_path, settings, expected):
    X, y = _frames(40)
    with pytest.raises(SeqtrainError, match=expected):
        SequenceModel("lstm", run_dir=tmp_path / "run", **settings).fit(X, y)
    assert not (tmp_path / "run").exists()


def test_fit_refuses_a_folder_holding_a_run_before_writing_anything(tmp_path):
    """An earlier run's files (its own training table among them), or any other file of the
    user's, survive byte for byte."""
    X, y = _frames(40)
    earlier = tmp_path / "run"
    for name, data in {".hydra/config.yaml": b"data: {}\n", "metrics.json": b"{}\n",
                       "data/train.parquet": b"the earlier run's table"}.items():
        (earlier / name).parent.mkdir(parents=True, exist_ok=True)
        (earlier / name).write_bytes(data)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_bytes(b"mine")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(SeqtrainError, match=r"run_dir: .*run already holds a run; choose a new folder"):
        SequenceModel("lstm", run_dir=earlier, max_epochs=1).fit(X, y)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    with pytest.raises(SeqtrainError, match=r"run_dir: .*mine exists and is not empty"):
        SequenceModel("lstm", run_dir=tmp_path / "mine", max_epochs=1).fit(X, y)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
