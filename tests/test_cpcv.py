"""Combinatorial purged cross-validation: every split trains around its test groups without
reading them (labels purged on both sides, the embargo after), in memory and streamed, and the
backtest paths recombine the splits' test windows so that each path tests every group once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module

import seqtrain
from seqtrain.data.memory import read_table
from seqtrain.data.stream_plan import plan_stream
from seqtrain.run.cpcv import split_configs
from tests.conftest import TINY, run_seqtrain
from tests.data.test_streaming import assert_same_windows, in_memory, streamed, write
from tests.helpers import make_table

L, H, EMBARGO = 8, 2, 3


def _table() -> pd.DataFrame:
    """Three series on one daily calendar, one with a missing bar."""
    table = make_table(240, n_series=3)
    return table.drop(index=table.index[(table["symbol"] == "SYM1")][100]).reset_index(drop=True)


def _cfg(path):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        return compose("config", overrides=[
            "data=parquet", f"data.path={path}", "data.target=close", "data.group_col=symbol",
            "data.features=[ret,vol,rsi]", "data.label=direction", "data.dead_zone=q0.33",
            "task=classification", f"data.seq_length={L}", f"data.horizon={H}", f"data.embargo={EMBARGO}",
            "eval=cpcv", "eval.groups=4", "eval.test_groups=2"])


def _in_test(times: np.ndarray, groups: list[int], starts: np.ndarray) -> np.ndarray:
    group = np.searchsorted(starts[1:-1], times, side="right")
    return np.isin(group, groups)


def test_no_training_or_validation_window_touches_a_test_group(tmp_path):
    table = _table()
    path = write(table, tmp_path / "bars.parquet", 61)
    cfg = _cfg(path)
    starts, splits = split_configs(cfg, str(path))
    assert len(splits) == 6
    for info, split_cfg in splits:
        tested = [int(g) for g in info["test_groups"].split("+")]
        data = read_table(split_cfg.data, "classification", str(path))
        for name in ("train", "val"):
            ends = data.ends[name]
            # the label rows, and every input row with the embargo before it, in the same series
            reach = ends[:, None] + np.arange(-(L - 1) - EMBARGO, H + 1)
            inside = (reach >= 0) & (reach < len(data.times))
            rows = np.where(inside, reach, 0)
            same = inside & (data.series[rows] == data.series[ends][:, None])
            assert not (_in_test(data.times[rows], tested, starts) & same).any(), (info, name)
        # validation ends where the last training group does: never in a test group
        assert not _in_test(data.times[data.ends["val"]], tested, starts).any()
        assert _in_test(data.times[data.ends["test"]], tested, starts).all()
        # statistics fit on training rows: change every test-group row, nothing learned moves (nor
        # the dead zone, though the moves of the first training rows after a test group start in it)
        tested_rows = _in_test(table["time"].to_numpy(), tested, starts)
        moved = table.assign(ret=np.where(tested_rows, 1e6, table["ret"]),
                             close=np.where(tested_rows, table["close"] * 1.5, table["close"]))
        moved_path = str(write(moved, tmp_path / "moved.parquet", 61))
        again = read_table(split_cfg.data, "classification", moved_path)
        moved_state, saved = again.state.to_dict(), data.state.to_dict()
        assert moved_state["scaler"] == saved["scaler"] and moved_state["label"] == saved["label"]
        # the streamed path cuts exactly the same windows from row groups
        memory, expected = in_memory(split_cfg.data, "classification", path)
        stream, got = streamed(split_cfg.data, "classification", path)
        streamed_state, memory_state = stream.state.to_dict(), memory.state.to_dict()
        assert streamed_state["label"] == memory_state["label"]
        moved_stream = plan_stream(split_cfg.data, "classification", moved_path)
        assert moved_stream.state.to_dict()["label"] == memory_state["label"]
        assert streamed_state["windows"] == memory_state["windows"]
        assert streamed_state["class_counts_by_split"] == memory_state["class_counts_by_split"]
        for split in ("train", "val", "test"):
            assert_same_windows(expected[split], got[split])


def test_cpcv_run_recombines_the_splits_into_paths(run_cli, monkeypatch, capsys, tmp_path):
    """Streamed here (the README's command runs in memory)."""
    result = run_cli(*TINY, "plots=true", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                     "data.generator.name=bars", "data.target=close", "data.label=direction",
                     "data.horizon=2", "data.embargo=2", "eval=cpcv", "eval.groups=3", "eval.test_groups=2",
                     "data.streaming=true", "calibrate=temperature")
    assert result.code == 0, result.err
    run = result.run_dir
    assert sorted(p.name for p in run.glob("split_*")) == ["split_00", "split_01", "split_02"]
    paths = pd.read_csv(run / "paths.csv")
    assert paths["splits"].tolist() == ["0-0-1", "1-2-2"]  # groups (0,1) (0,2) (1,2): 2 paths
    predictions = pd.read_parquet(run / "predictions.parquet")
    keys = ["symbol", "window_end", "step"]
    for group in range(3):  # a group's test windows are the same in every split that tests it
        tested = [set(map(tuple, part[keys].to_numpy().tolist()))
                  for _, part in predictions[predictions["group"] == group].groupby("split")]
        assert len(tested) == 2 and tested[0] == tested[1]
    everything = predictions.drop_duplicates(keys)
    assert (paths["windows"] == (everything["step"] == 1).sum()).all()  # each path: the data once
    first = predictions[((predictions["split"] == 0) & (predictions["group"] < 2))
                        | ((predictions["split"] == 1) & (predictions["group"] == 2))]
    assert paths.loc[0, "test_acc"] == pytest.approx((first["y_pred"] == first["y_true"]).mean())
    assert paths["sharpe"].notna().all()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval"] == "cpcv" and metrics["n_paths"] == 2 and len(metrics["splits"]) == 3
    quantiles = metrics["quantiles"]["test_acc"]
    assert list(quantiles) == ["q5", "q25", "q50", "q75", "q95"]
    assert paths["test_acc"].min() <= quantiles["q50"] <= paths["test_acc"].max()
    assert (run / "plots" / "paths.png").is_file()
    loaded = seqtrain.load(run)  # one model per split, each a run of its own
    assert len(loaded.splits) == 3 and loaded.splits[2].data_state.fit_summary["streaming"]
    # predict names a split's model (none is the run's own); without one, or with fold=, one line
    table = run / "data" / "synthetic.parquet"  # the bars the splits trained on
    out = tmp_path / "split1.parquet"
    code, said = run_seqtrain(monkeypatch, capsys, "predict", f"run={run}", f"data.path={table}", "split=1",
                              "newest=true", f"output={out}")
    assert code == 0, said
    direct = tmp_path / "direct.parquet"
    code, said = run_seqtrain(monkeypatch, capsys, "predict", f"run={run / 'split_01'}", f"data.path={table}",
                              "newest=true", f"output={direct}")
    assert code == 0, said
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(direct))
    for args, expected in ((["split=7"], "has no split_07; split=0..2"), ([], "name one with split=0..2"),
                           (["fold=0"], "choose one with split=K")):
        code, said = run_seqtrain(monkeypatch, capsys, "predict", f"run={run}", f"data.path={table}", *args)
        assert code == 2 and expected in " ".join(said.split()) and "Traceback" not in said
    out = " ".join(result.out.split())
    assert "cpcv (3 groups, 2 tested: 3 splits, 2 paths)" in out
    assert "walk-forward tests each period once" in out
    calibration = metrics["calibration"]  # every split's test windows, each split's own temperature
    assert calibration["windows"] == (predictions["step"] == 1).sum()
    assert len(calibration["temperatures"]) == 3
    assert "calibration (test, T by split" in out and f"Brier {calibration['brier']:.4f}" in out


@pytest.mark.parametrize("overrides, expected", [
    (["eval.groups=3", "eval.test_groups=3"], "eval.test_groups: 3"),
    (["eval.val_share=1.5"], "eval.val_share: 1.5"),
    (["data.split.val_start=2022-03-01", "data.split.test_start=2022-04-01"], "drop data.split.val_start"),
])
def test_bad_cpcv_settings_are_one_line(run_cli, overrides, expected):
    result = run_cli(*TINY, "eval=cpcv", *overrides)
    assert result.code == 2 and "Traceback" not in result.err
    assert expected in " ".join(result.err.split())


@pytest.mark.parametrize("streaming", ["false", "true"])
def test_training_blocks_shorter_than_a_labels_reach_are_one_line(run_cli, streaming):
    """A triple-barrier label reads 5 x data.barrier.span rows of volatility before it: a training
    group of 400/3 hourly bars preceded by test groups holds no label that reads training rows only."""
    result = run_cli(*TINY, "data.generator.name=bars", "data.target=close", "task=classification",
                     "data.label=triple_barrier", "eval=cpcv", "eval.groups=3", "eval.test_groups=2",
                     f"data.streaming={streaming}")
    assert result.code == 2 and "Traceback" not in result.err
    assert "has no training row whose label reads training rows only" in " ".join(result.err.split())
