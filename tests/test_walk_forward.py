"""Walk-forward evaluation: folds forward in time, each trained on its own past only, purged
at every boundary, its test predictions pooled to cover the evaluated period once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrain.data.columns import utc_times
from seqtrain.data.memory import read_table
from seqtrain.data.splits import walk_forward_folds
from seqtrain.report.baselines import pooled_skill
from seqtrain.run.walk_forward import fold_configs
from tests.conftest import TINY
from tests.helpers import make_table


@settings(max_examples=200, deadline=None)
@given(st.integers(20, 3000), st.integers(1, 8), st.floats(0.01, 0.2), st.floats(0.01, 0.2),
       st.sampled_from(["expanding", "sliding"]), st.floats(0.05, 0.5))
def test_folds_tile_the_end_of_the_time_axis(n, folds, test_size, val_size, scheme, train_size):
    found = walk_forward_folds(n, folds, test_size, val_size, scheme, train_size)
    if not found:
        return
    n_test = round(n * test_size)
    assert len(found) == folds
    tested = []
    for i, fold in enumerate(found):
        end = fold.test_end if fold.test_end is not None else n
        assert 0 <= fold.train_start < fold.val_start < fold.test_start < end <= n
        assert fold.test_start - fold.val_start == round(n * val_size)  # validation right before test
        assert end - fold.test_start == n_test or i == folds - 1
        if scheme == "expanding":
            assert fold.train_start == 0
        tested.extend(range(fold.test_start, end))
    # every evaluated timestamp is tested exactly once, and the last fold ends with the data
    assert tested == list(range(n - folds * n_test, n))


def _cfg(path, *overrides):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        return compose("config", overrides=["data=parquet", f"data.path={path}", "data.target=close",
                                            "data.group_col=symbol", "data.features=[ret,vol,rsi]",
                                            "eval=walk_forward", "eval.folds=3", "eval.test_size=0.1",
                                            "data.horizon=2", "data.embargo=2", "data.seq_length=8",
                                            *overrides])


def test_every_fold_is_purged_and_fit_on_its_own_training_rows(tmp_path):
    table = make_table(500, n_series=2)
    path = tmp_path / "bars.parquet"
    table.to_parquet(path, index=False)
    cfg = _cfg(path)
    for bounds, fold_cfg in fold_configs(cfg, str(path)):
        data = read_table(fold_cfg.data, "regression", str(path))
        label_time = lambda ends, d=data: d.times[ends + 2]  # noqa: E731
        val_start = np.datetime64(bounds["val_start"])
        test_start = np.datetime64(bounds["test_start"])
        assert (label_time(data.ends["train"]) < val_start).all()  # purge
        assert (label_time(data.ends["val"]) < test_start).all()
        assert (data.times[data.ends["val"]] >= val_start).all()
        if bounds["test_end"] is not None:  # nothing after the fold's test block is read
            assert data.times.max() < np.datetime64(bounds["test_end"])
        # the fold's statistics: change every value from its validation start on, nothing moves
        later = table.assign(ret=np.where(table["time"] >= pd.Timestamp(val_start), 1e6, table["ret"]))
        moved = tmp_path / "later.parquet"
        later.to_parquet(moved, index=False)
        again = read_table(fold_cfg.data, "regression", str(moved))
        assert again.state.to_dict()["scaler"] == data.state.to_dict()["scaler"]
        assert again.state.to_dict()["target_scaler"] == data.state.to_dict()["target_scaler"]


def test_walk_forward_run_pools_the_folds(run_cli):
    result = run_cli(*TINY, "plots=true", "eval=walk_forward", "eval.folds=3", "eval.test_size=0.1",
                     "data.embargo=1")
    assert result.code == 0, result.err
    run = result.run_dir
    folds = pd.read_csv(run / "folds.csv")
    assert folds["fold"].tolist() == [0, 1, 2]
    assert (pd.to_datetime(folds["test_start"]).diff().dropna() > pd.Timedelta(0)).all()
    predictions = pd.read_parquet(run / "predictions.parquet")
    assert sorted(predictions["fold"].unique()) == [0, 1, 2]
    keys = predictions[["symbol", "window_end", "step"]]
    assert not keys.duplicated().any()  # each evaluated window once
    for i in range(3):  # each fold's windows lie in its own test block
        part = predictions[predictions["fold"] == i]
        row = folds.iloc[i]
        assert (part["window_end"] >= pd.Timestamp(row["test_start"])).all()
        if isinstance(row["test_end"], str):
            assert (part["time"] < pd.Timestamp(row["test_end"])).all()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval"] == "walk_forward" and len(metrics["folds"]) == 3
    pooled = metrics["pooled"]
    assert pooled["metric"] == "test_acc"
    assert pooled["value"] == pytest.approx((predictions["y_pred"] == predictions["y_true"]).mean())
    assert pooled["interval"][0] <= pooled["value"] <= pooled["interval"][1]
    assert (run / "plots" / "folds.png").is_file() and (run / "plots" / "predictions.png").is_file()
    assert (run / "fold_02" / "checkpoints" / "best.ckpt").exists()  # each fold a whole run
    assert "walk-forward (3 folds, expanding)" in " ".join(result.out.split())


@pytest.mark.parametrize("streaming", [False, True])
def test_sliding_regression_walk_forward(run_cli, streaming):
    result = run_cli(*TINY, "task=regression", "eval=walk_forward", "eval.folds=2", "eval.test_size=0.1",
                     "eval.scheme=sliding", "eval.train_size=0.4", f"data.streaming={streaming}")
    assert result.code == 0, result.err
    state = json.loads((result.run_dir / "fold_01" / "data_state.json").read_text())
    assert state.get("streaming", False) is streaming
    folds = pd.read_csv(result.run_dir / "folds.csv")
    assert folds["train_start"].notna().all() and "test_mae" in folds
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["pooled"]["metric"] == "test_mae"
    # each fold's conformal bands come from its own validation block; pooled, they keep their columns
    pooled = pd.read_parquet(result.run_dir / "predictions.parquet")
    assert {"lo_80", "hi_80", "lo_95", "hi_95"} <= set(pooled) and pooled["lo_80"].notna().all()
    own = [json.loads((result.run_dir / f"fold_0{i}" / "calibration.json").read_text())["validation_windows"]
           for i in range(2)]
    assert metrics["intervals"]["validation_windows"] == own == folds["windows_val"].tolist()
    assert 0 <= metrics["intervals"]["levels"]["80"]["coverage"] <= 1


@pytest.mark.parametrize("overrides, expected", [
    (["eval.folds=0"], "eval.folds: 0"),
    (["eval.scheme=rolling"], "eval.scheme: 'rolling'"),
    (["eval.scheme=sliding"], "set eval.train_size"),
    (["eval.folds=40", "eval.test_size=0.1"], "too few for 40 folds"),
    (["eval.test_size=2"], "eval.test_size: 2"),
    (["eval.refit=cold"], "eval.refit: 'cold'"),
    (["eval.trials=0"], "eval.trials: 0"),
    (["eval.pbo_blocks=5"], "eval.pbo_blocks: 5"),
])
def test_bad_walk_forward_settings_are_one_line(run_cli, overrides, expected):
    result = run_cli(*TINY, "eval=walk_forward", *overrides)
    assert result.code == 2 and "Traceback" not in result.err
    assert expected in " ".join(result.err.split())


def test_a_sweep_of_walk_forward_runs_compares_their_pooled_results_and_its_nested_one(run_cli):
    # direction labels on the bars demo: each job's pooled book is saved and its Sharpe deflated
    # by eval.trials; two jobs are too few for the sweep's PBO, which says so in one line
    result = run_cli("-m", *TINY, "eval=walk_forward", "eval.folds=2", "eval.test_size=0.1",
                     "data.generator.name=bars", "data.target=close", "data.label=direction", "eval.trials=3",
                     "model.hidden_size=8,16")
    assert result.code == 0, result.err
    summary = pd.read_csv(result.run_dir / "summary.csv")
    assert len(summary) == 2 and summary["test_acc"].notna().all() and "skill" in summary
    # the search's own out-of-sample result: block k scored by the job chosen for it
    nested = json.loads((result.run_dir / "summary.json").read_text())["nested"]
    blocks = pd.read_csv(result.run_dir / "nested.csv")
    assert blocks["block"].tolist() == [0, 1] and nested["jobs"] == ["0", "1"] and not nested["left_out"]
    read = lambda job: pd.read_parquet(result.run_dir / str(job) / "predictions.parquet")  # noqa: E731
    chosen = pd.concat([read(job).query(f"fold == {k}")
                        for k, job in enumerate(blocks["job"])])
    again = pooled_skill("classification", utc_times(chosen), "symbol", 42)
    assert nested["windows"] == again["windows"] == (chosen["step"] == 1).sum()
    assert (nested["value"], nested["interval"]) == (again["value"], again["interval"])
    star = str(summary.loc[summary["rank"] == 1, "job"].item())
    assert nested["selected_in_sample"]["job"] == star == str(blocks["job"].iloc[-1])
    star_metrics = json.loads((result.run_dir / star / "metrics.json").read_text())
    assert nested["windows"] == star_metrics["windows_tested"]  # the same windows, chosen block by block
    assert "selected in-sample" in result.out and "nested out-of-sample test_acc" in result.out
    trading = json.loads((result.run_dir / "0" / "metrics.json").read_text())["trading"]
    book = pd.read_parquet(result.run_dir / "0" / "trading.parquet")  # the folds' pooled book
    assert len(book) == trading["model"]["periods"] and book["model"].mean() == pytest.approx(
        trading["model"]["mean_return"])
    deflated = trading["deflated_sharpe"]
    assert deflated["trials"] == 3 and deflated["variance_from"] == "estimator"
    assert deflated["dsr"] < deflated["psr"] == trading["model"]["psr"]
    judged = json.loads((result.run_dir / "summary.json").read_text())
    assert judged["pbo"] is None and "at least 4 jobs" in judged["pbo_note"]
    text = " ".join(result.out.split())
    assert "deflated Sharpe: " in text and "eval.trials=3" in text and "PBO needs at least 4 jobs" in text


def test_the_python_api_opens_a_walk_forward_run_and_its_folds(tmp_path):
    import seqtrain
    from seqtrain import SeqtrainError

    run = seqtrain.train([*TINY, "eval=walk_forward", "eval.folds=2", "eval.test_size=0.1"],
                         run_dir=tmp_path / "wf")
    assert run.walk_forward and len(run.folds) == 2
    assert run.metrics["pooled"]["metric"] == "test_acc"
    table = pd.read_parquet(run.path / "data" / "synthetic.parquet")
    with pytest.raises(SeqtrainError, match="one model per fold"):
        run.predict(table)
    assert len(run.folds[-1].predict(table, newest=True)) == 3


def test_warm_refit_starts_each_fold_from_the_previous_folds_best_weights(tmp_path, monkeypatch):
    import torch

    import seqtrain
    from seqtrain.run import train as training

    started = []
    real = training.warm_start

    def recorded(module, checkpoint):
        real(module, checkpoint)
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        same = all(torch.equal(module.state_dict()[k], saved[k]) for k in saved)
        started.append((checkpoint.parent.parent.name, same))

    monkeypatch.setattr(training, "warm_start", recorded)
    run = seqtrain.train([*TINY, "task=regression", "eval=walk_forward", "eval.folds=3",
                          "eval.test_size=0.1", "eval.refit=warm"], run_dir=tmp_path / "wf")
    assert started == [("fold_00", True), ("fold_01", True)]
    folds = pd.read_csv(run.path / "folds.csv")
    assert folds["warm_from"].fillna("").tolist() == ["", "fold_00", "fold_01"]
    assert run.metrics["refit"] == "warm"


def test_a_fold_whose_shapes_changed_starts_fresh_and_says_so(tmp_path, caplog):
    import torch

    from seqtrain.engine.module import SeqModule
    from seqtrain.engine.trainer import warm_start
    from seqtrain.models.registry import build_model

    def module(inputs):
        torch.manual_seed(inputs)
        return SeqModule(build_model("lstm", {"hidden_size": 4}, inputs, 1), "regression",
                         {"name": "adam", "lr": 1e-3}, {"name": "none"})

    path = tmp_path / "fold_00" / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": module(3).state_dict()}, path)
    wider = module(4)
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    warm_start(wider, path)
    assert all(torch.equal(wider.state_dict()[k], v) for k, v in before.items())
    assert "fold_00" in caplog.text and "fresh weights" in caplog.text


def test_fold_and_split_rows_carry_the_mean_uniqueness_of_their_training_windows():
    from seqtrain.run.cpcv import _split_row
    from seqtrain.run.walk_forward import _fold_row

    skill = {"metric": "test_acc", "value": 0.5, "interval": [0.4, 0.6], "baselines": {"majority": 0.5},
             "skill": 0.0, "beats_best_baseline": False}
    metrics = {"skill": skill, "windows": {"train": 10, "val": 4, "test": 4}, "best_epoch": 1}
    weighted = {**metrics, "sample_weight": {"kind": "uniqueness", "decay": 1.0, "mean_uniqueness": 0.25}}
    assert _fold_row(0, {}, weighted, 1.0)["mean_uniqueness"] == 0.25
    assert _split_row({"split": 0}, weighted, 1.0)["mean_uniqueness"] == 0.25
    assert "mean_uniqueness" not in _fold_row(0, {}, metrics, 1.0)
    assert "mean_uniqueness" not in _split_row({"split": 0}, metrics, 1.0)
