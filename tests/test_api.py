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
    run = seqtrain.train(TINY + ["progress_bar=false"], run_dir=tmp_path / "api")
    assert run.path == tmp_path / "api"
    assert run.metrics["test"] == by_cli.metrics()["test"]
    assert run.metrics["best_val"] == by_cli.metrics()["best_val"]
    assert (run.path / "train.log").exists() and (run.path / ".hydra" / "config.yaml").exists()
    again = seqtrain.load(run.path)
    table = pd.read_parquet(run.path / "data" / "synthetic.parquet")
    preds = again.predict(table, last=True)
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
    split = model.run.data_state.record["split"]
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
