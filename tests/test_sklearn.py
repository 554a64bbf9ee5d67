"""SequenceModel as a scikit-learn estimator: clone, parameters, score, searches over time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from seqtrain import SeqtrainError, SequenceModel
from seqtrain.api import forecast_scorer
from seqtrain.report import run as report

TINY_FIT = {"seq_length": 8, "hidden_size": 8, "max_epochs": 1, "progress_bar": False, "num_layers": 1}


@pytest.fixture
def quick(monkeypatch, tmp_path):
    """Fits without plots (they are the slowest part of a tiny run and not what is checked
    here), their run folders under ``tmp_path/outputs``."""
    for name in ("plot_curves", "plot_predictions", "plot_equity", "plot_interpretation"):
        monkeypatch.setattr(report, name, lambda *args, **kwargs: None)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _bars(n_rows: int = 200, seed: int = 0):
    """One series indexed by time: y[t] is the direction of the next ``lead`` (a label stage's
    look-ahead label, known one row after t)."""
    rng = np.random.default_rng(seed)
    lead = rng.normal(size=n_rows)
    index = pd.date_range("2022-01-01", periods=n_rows, freq="h", name="time")
    X = pd.DataFrame({"lead": lead, "noise": rng.normal(size=n_rows)}, index=index)
    return X, pd.Series((np.roll(lead, -1) > 0).astype(int), index=index, name="up")


def test_clone_and_parameters_round_trip():
    model = SequenceModel("tcn", task="regression", overrides=["scheduler=cosine"], label_ahead=1,
                          num_channels=[8, 8], max_epochs=2)
    params = model.get_params()
    assert params == {"model": "tcn", "task": "regression", "run_dir": None,
                      "overrides": ["scheduler=cosine"], "target_as_input": False,
                      "label_ahead": 1, "num_channels": [8, 8], "max_epochs": 2}
    assert params["overrides"] is model.overrides and model.num_channels == [8, 8]
    twin = clone(model)
    assert twin.get_params() == params and twin is not model
    assert model.set_params(model="gru", hidden_size=4) is model  # a new setting joins the parameters
    assert model.get_params()["model"] == "gru" and model.get_params()["hidden_size"] == 4
    assert clone(model).get_params() == model.get_params()
    assert SequenceModel(overrides=None).get_params()["overrides"] is None  # stored as given
    with pytest.raises(ValueError, match="'fit' is not a parameter"):
        model.set_params(fit=1)
    assert not hasattr(twin, "run_")  # fitted attributes appear only with fit


def test_grid_search_over_time_series_splits(quick):
    X, y = _bars()
    model = SequenceModel("lstm", label_ahead=1, **TINY_FIT)
    search = GridSearchCV(model, {"hidden_size": [4, 8]}, cv=TimeSeriesSplit(n_splits=2), error_score="raise")
    search.fit(X[:150], y[:150])
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.all((scores >= 0) & (scores <= 1))
    runs = sorted(quick.glob("outputs/*/*/metrics.json"))
    assert len(runs) == 2 * 2 + 1  # every fit of every clone in its own folder, the refit too
    best = search.best_estimator_
    assert best.run_.path.resolve() == runs[-1].parent.resolve() and list(best.classes_) == [0, 1]
    # score: the accuracy of the forecasts made at the rows of X that have one (label_ahead: for y[t])
    predicted = best.predict(X[150:])
    has = predicted.notna()
    assert has.sum() == 50 - 7  # an 8-row window needs 7 rows of history
    assert best.score(X[150:], y[150:]) == pytest.approx(accuracy_score(y[150:][has], predicted[has]))
    assert search.score(X[150:], y[150:]) == best.score(X[150:], y[150:])


def test_cross_val_score_of_a_pipeline(quick):
    X, y = _bars()
    pipeline = make_pipeline(StandardScaler().set_output(transform="pandas"),
                             SequenceModel("gru", label_ahead=1, **TINY_FIT))
    scores = cross_val_score(pipeline, X, y, cv=TimeSeriesSplit(n_splits=2), error_score="raise")
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


def test_regression_score_is_r2_against_the_row_horizon_ahead(quick):
    X, y = _bars()
    value = (X["lead"].cumsum() + 0.1 * X["noise"]).rename("level")
    model = SequenceModel("lstm", task="regression", horizon=2, **TINY_FIT).fit(X[:150], value[:150])
    predicted = model.predict(X[150:])  # made at row t for row t+2
    truth = value[150:].shift(-2)
    has = predicted.notna() & truth.notna()
    assert has.sum() == 50 - 7 - 2
    assert model.score(X[150:], value[150:]) == pytest.approx(r2_score(truth[has], predicted[has]), rel=1e-5)


def test_forecast_scorer_in_cross_val_score_is_aligned(quick):
    X, y = _bars(160)
    value = (X["lead"].cumsum() + 0.1 * X["noise"]).rename("level")
    model = SequenceModel("lstm", task="regression", horizon=2, **TINY_FIT)
    scores = cross_val_score(model, X, value, cv=TimeSeriesSplit(n_splits=2), error_score="raise",
                             scoring=forecast_scorer("mae"))
    assert scores.shape == (2,) and np.all(np.isfinite(scores)) and np.all(scores <= 0)
    model.fit(X[:120], value[:120])
    predicted, truth = model.predict(X[120:]), value[120:].shift(-2)  # made at t for t+2
    has = predicted.notna() & truth.notna()
    assert forecast_scorer("mae")(model, X[120:], value[120:]) == pytest.approx(
        -(truth[has] - predicted[has]).abs().mean(), rel=1e-5)
    assert forecast_scorer("r2")(model, X[120:], value[120:]) == model.score(X[120:], value[120:])
    with pytest.raises(SeqtrainError, match="forecast_scorer: 'mse'"):
        forecast_scorer("mse")


def test_fit_inside_a_hydra_app_and_in_threads(quick):
    import hydra
    import joblib
    from hydra.core.global_hydra import GlobalHydra

    X, y = _bars(120)
    with hydra.initialize(version_base="1.3", config_path=None):
        ours = GlobalHydra.instance().hydra
        SequenceModel("lstm", label_ahead=1, **TINY_FIT).fit(X, y)
        assert GlobalHydra.instance().hydra is ours  # the app's own Hydra given back
    with joblib.parallel_config(backend="threading"):
        scores = cross_val_score(SequenceModel("lstm", label_ahead=1, **TINY_FIT), X, y, n_jobs=2,
                                 cv=TimeSeriesSplit(n_splits=2), error_score="raise")
    assert scores.shape == (2,)


def test_run_dir_is_claimed_once(quick, monkeypatch):
    first, second = (SequenceModel(run_dir="shared") for _ in range(2))
    # both processes passed the emptiness check before either wrote: only one claims the folder
    monkeypatch.setattr("seqtrain.api.runs.free_run_dir", lambda run_dir: (quick / "shared").absolute())
    assert first._claim_run_dir() == ((quick / "shared").absolute(), True)
    with pytest.raises(SeqtrainError, match="being written by another fit"):
        second._claim_run_dir()


def test_a_fit_refused_on_its_data_leaves_no_folder(quick, monkeypatch):
    X, y = _bars(120)
    short = SequenceModel("lstm", label_ahead=1, **TINY_FIT)
    with pytest.raises(SeqtrainError):
        short.fit(X[:5], y[:5])  # shorter than one window: refused by the data layer
    assert not list(quick.glob("outputs/*/*"))
    (quick / "empty").mkdir()
    for run_dir in ("new", "empty"):
        with pytest.raises(SeqtrainError):
            short.set_params(run_dir=run_dir).fit(X[:5], y[:5])
    assert not (quick / "new").exists() and list((quick / "empty").iterdir()) == []
    twice = pd.concat([X[:60], X[:60]])
    with pytest.raises(SeqtrainError, match="X: index entry .* appears more than once"):
        short.fit(twice, y.reindex(twice.index))
    with pytest.raises(SeqtrainError, match="X: column 'lead' appears twice"):
        short.fit(pd.concat([X, X[["lead"]]], axis=1), y)
    with pytest.raises(SeqtrainError, match="X: column 'time' is also the name of an index level"):
        short.fit(X.assign(time=1.0), y)
    with pytest.raises(SeqtrainError, match="X: no rows"):
        short.fit(X[:0], y[:0])
    model = short.set_params(run_dir="new").fit(X, y)  # the retry is free to use the folder
    assert model.run_.path == quick / "new"
    (quick / "elsewhere").mkdir()
    monkeypatch.chdir(quick / "elsewhere")  # the run is still found: its path is absolute
    assert model.run_.path.is_absolute() and model.predict(X).notna().sum() == 120 - 7


def test_label_ahead_leaves_out_the_rows_without_a_label_yet(quick):
    X, y = _bars(120)
    close = (100 + X["lead"].cumsum()).rename("close")
    model = SequenceModel("lstm", task="regression", label_ahead=1, **TINY_FIT).fit(X, close.shift(-1))
    # the last row has no label yet: left out
    assert len(pd.read_parquet(model.run_.path / "data" / "train.parquet")) == 119
    hole = close.shift(-1)
    hole.iloc[50] = np.nan
    for label_ahead, label in ((1, hole), (None, close.shift(-1))):
        with pytest.raises(SeqtrainError, match=r"^y: 1 missing or infinite label\(s\), the first") as err:
            model.set_params(label_ahead=label_ahead).fit(X, label)
        assert "ffill" not in str(err.value) and "data.target" not in str(err.value)


def test_save_keeps_numbers_and_short_x_predicts_nan(quick):
    X, y = _bars(120)
    model = SequenceModel("lstm", label_ahead=1, **{**TINY_FIT, "hidden_size": np.int64(8)},
                          lr=np.float32(0.01)).fit(X, y)
    loaded = SequenceModel.load(model.save(quick / "saved"))
    params = loaded.get_params()
    assert params["hidden_size"] == 8 and type(params["hidden_size"]) is int and type(params["lr"]) is float
    for short in (X[:5], X[:0]):  # rows without a window: NaN, as for any row short of history
        assert loaded.predict(short).isna().all() and len(loaded.predict(short)) == len(short)
        proba = loaded.predict_proba(short)
        assert list(proba.columns) == ["0", "1"] and proba.isna().all().all()


def test_column_names_read_back_verbatim():
    from omegaconf import OmegaConf

    from seqtrain.api.runs import literal as _literal

    for name in ["a\\${x}", "a\\\\${x}", "${x}", "p\\q", "x\\", "$${a}b"]:  # backslashes before ${ too
        config = OmegaConf.create({"features": [_literal(name)]})
        assert config.features[0] == name
        assert OmegaConf.to_container(config, resolve=True)["features"] == [name]


@pytest.mark.parametrize("model", [SequenceModel(precision="16,32"),
                                   SequenceModel(overrides=["data.seq_length=8,16"])])
def test_a_sweep_is_not_a_setting(quick, model):
    X, y = _bars(40)
    with pytest.raises(SeqtrainError, match=r"=.*,.*: a sweep is not a setting of one model"):
        model.fit(X, y)
    assert not list(quick.glob("outputs/*/*"))


def test_walk_forward_folds_keep_column_names_verbatim(tmp_path):
    from seqtrain.api import compose
    from seqtrain.api.runs import literal as _literal
    from seqtrain.run.walk_forward import fold_configs

    X, y = _bars(120)
    table = X.rename(columns={"lead": "${x}"}).assign(up=y).reset_index()
    table.to_parquet(tmp_path / "t.parquet")
    cfg = compose(["data=parquet", f"data.path={tmp_path / 't.parquet'}", "data.target=up",
                   "eval=walk_forward", "data.seq_length=8"])
    cfg.data.features = [_literal("${x}"), "noise"]
    folds = fold_configs(cfg, str(tmp_path / "t.parquet"))
    assert folds and all(list(fold.data.features) == ["${x}", "noise"] for _, fold in folds)
