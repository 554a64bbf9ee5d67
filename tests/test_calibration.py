"""Calibrated probabilities and conformal intervals: the formulas by hand, the temperature fit
on validation windows only, and both carried unchanged through test, predict, the API and export."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import seqtrain
from seqtrain.data import synthetic
from seqtrain.engine.calibration import (
    Calibration,
    brier_score,
    check_settings,
    conformal_quantile,
    conformity_scores,
    expected_calibration_error,
    fit_temperature,
    interval_report,
    softmax,
)
from seqtrain.engine.callbacks import KeepPredictions
from seqtrain.errors import SeqtrainError
from seqtrain.report.trading import trading_report
from tests.conftest import run_seqtrain

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


@pytest.mark.parametrize("counted", [3, 1, math.inf])
def test_validation_records_are_kept_as_one_record_of_the_keys_asked(counted):
    """Calibration's records of a predict pass: only the keys it reads, every window's values
    in order in one tensor each (allocated for the pass's batches, grown past them if more
    come, or where their count is unknown), whatever the batch sizes."""
    trainer = type("Trainer", (), {"num_predict_batches": [counted]})()
    kept = KeepPredictions(("y", "pred", "quantiles"))
    batches = [{"y": torch.arange(n, dtype=torch.float32)[:, None] + 10 * i, "pred": torch.full((n, 1), i),
                "x_last": torch.zeros(n, 5), "window": torch.zeros(n, 2)} for i, n in enumerate([4, 4, 2])]
    for i, batch in enumerate(batches):
        kept.on_predict_batch_end(trainer, None, batch, None, i)
    (record,) = kept.records
    assert set(record) == {"y", "pred"}
    for key in record:
        assert torch.equal(record[key], torch.cat([b[key] for b in batches]))


def test_brier_score_and_ece_by_hand():
    probs = np.array([[0.7, 0.3], [0.45, 0.55], [0.42, 0.58], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 0])
    # (0.3² + 0.3²) + (0.55² + 0.55²) + (0.42² + 0.42²) + (0.9² + 0.9²), over 4 windows
    assert brier_score(probs, labels) == pytest.approx((0.18 + 0.605 + 0.3528 + 1.62) / 4)
    # top-label confidences 0.7 (right), 0.55 (wrong), 0.58 (right), 0.9 (wrong); of 15 bins,
    # 0.55 and 0.58 share (8/15, 9/15]: |1/2 - 0.565| · 2/4; the others alone: |1 - 0.7|, |0 - 0.9|
    expected = (0.3 + 0.9) / 4 + abs(0.5 - 0.565) * 2 / 4
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)
    three = np.array([[0.2, 0.5, 0.3]])  # multi-class: the sum over classes
    assert brier_score(three, np.array([2])) == pytest.approx(0.04 + 0.25 + 0.49)


def test_temperature_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20_000, 3))
    true_temperature = 2.5
    labels = np.array([rng.choice(3, p=p) for p in softmax(logits, true_temperature)])
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)
    assert fit_temperature(logits * 4, labels) == pytest.approx(4 * true_temperature, rel=0.05)


def test_conformal_quantile_is_the_right_order_statistic():
    scores = np.array([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0])  # 1..9, shuffled
    # n = 9, alpha = 0.2: ceil((9 + 1) · 0.8) = 8, the 8th smallest
    assert conformal_quantile(scores, 0.8) == 8.0
    assert conformal_quantile(scores, 0.9) == 9.0  # ceil(10 · 0.9) = 9
    assert math.isinf(conformal_quantile(scores, 0.95))  # ceil(9.5) = 10 > n: no finite band
    assert conformal_quantile(np.r_[scores, np.nan], 0.8) == 8.0  # missing truths are left out


def test_conformity_scores_and_bands_for_point_and_quantile_models():
    truth = np.array([[1.0], [4.0]])
    pred = np.array([[2.0], [3.0]])
    assert conformity_scores(truth, pred, None).tolist() == [[1.0], [1.0]]
    quantiles = np.array([[[0.0, 2.0, 3.0]], [[2.0, 3.0, 5.0]]])  # the band holds both: negative scores
    assert conformity_scores(truth, pred, quantiles).tolist() == [[-1.0], [-1.0]]
    point = Calibration("split_conformal", 9, margins={"80": [0.5, 1.0]}, levels={"80": 0.8})
    bands = point.bands(torch.tensor([[1.0, 2.0]]), None)
    assert bands["lo_80"].tolist() == [[0.5, 1.0]] and bands["hi_80"].tolist() == [[1.5, 3.0]]
    cqr = Calibration("cqr", 9, margins={"80": [-0.25]}, levels={"80": 0.8})
    bands = cqr.bands(torch.tensor([[2.0]]), torch.tensor([[[1.0, 2.0, 4.0]]]))
    assert bands["lo_80"].tolist() == [[1.25]] and bands["hi_80"].tolist() == [[3.75]]
    frame = pd.DataFrame({"step": [1, 1, 1, 1], "y_true": [0.0, 1.0, 2.0, np.nan],
                          "lo_80": [-1.0, 1.5, 1.0, 0.0], "hi_80": [1.0, 2.5, 3.0, 1.0]})
    level = interval_report(frame, point)["levels"]["80"]
    assert level["coverage"] == pytest.approx(2 / 3) and level["mean_width"] == pytest.approx(5 / 3)


@pytest.mark.parametrize("task, calibrate, coverage, sizing, expected", [
    ("classification", "platt", [0.8], "sign", "calibrate: 'platt'"),
    ("regression", "temperature", [0.8], "sign", "for task=classification"),
    ("regression", "none", [0.8, 1.2], "sign", "eval.coverage"),
    ("regression", "none", [0.8, 0.8], "sign", "eval.coverage"),
    ("classification", "none", [0.8], "kelly", "eval.sizing: 'kelly'"),
    ("regression", "none", 0.8, "sign", "eval.coverage: 0.8; a list"),  # a scalar, not a list
    ("regression", "none", [0.8, 0.800000001], "sign", "eval.coverage"),  # both would be lo_80
    ("regression", "none", [0.8], "probability", "eval.sizing=probability"),  # no p(up), no book
])
def test_bad_calibration_settings_are_one_line(task, calibrate, coverage, sizing, expected):
    with pytest.raises(SeqtrainError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        check_settings(task, calibrate, coverage, sizing)


@pytest.mark.parametrize("override, expected", [
    ("eval.coverage=0.8", "eval.coverage: 0.8"),
    ("eval.sizing=probability", "eval.sizing=probability"),  # meta-labels: classes 0/1, no p(down)
])
def test_a_scalar_coverage_and_probability_sizing_of_meta_labels_are_refused_before_any_data(
        run_cli, override, expected):
    result = run_cli("task=classification", "data.label=triple_barrier", "data.barrier.side=side",
                     "data.seq_length=4", override)
    assert result.code != 0 and expected in result.err and "Traceback" not in result.err, result.err


def test_probability_sizing_holds_p_up_minus_p_down():
    times = pd.date_range("2024-01-01", periods=4, freq="D")
    frame = pd.DataFrame({"time": times[1:], "window_end": times[:-1], "step": 1,
                          "y_pred": ["up", "down", "up"], "y_true": ["up", "up", "down"],
                          "move": [0.01, 0.02, -0.01],
                          "prob_down": [0.2, 0.5, 0.3], "prob_flat": [0.1, 0.2, 0.1],
                          "prob_up": [0.7, 0.3, 0.6]})
    sized = trading_report(frame, None, 1, 0.0, sizing="probability")
    # positions 0.5, -0.2, 0.3 on moves +1%, +2%, -1%
    assert sized["model"]["total_return"] == pytest.approx(1.005 * 0.996 * 0.997 - 1)
    assert sized["sign"]["total_return"] == pytest.approx(1.01 * 0.98 * 0.99 - 1)
    assert "sign" not in trading_report(frame, None, 1, 0.0)
    # a run (or a walk-forward fold) whose training saw no down move has no prob_down: p(down) = 0
    no_down = frame.drop(columns="prob_down").assign(prob_flat=[0.3, 0.7, 0.4])
    sized = trading_report(no_down, None, 1, 0.0, sizing="probability")
    assert sized["model"]["total_return"] == pytest.approx(1.007 * 1.006 * 0.994 - 1)


def test_a_calibration_is_applied_only_to_the_runs_own_best_checkpoint(tmp_path):
    from seqtrain.run.predict import run_calibration

    run, other = tmp_path / "run", tmp_path / "other"
    run.mkdir()
    Calibration("temperature", 9, temperature=2.0, checkpoint="best.ckpt").save(run / "calibration.json")
    assert run_calibration(run, run / "checkpoints" / "best.ckpt").temperature == 2.0
    assert run_calibration(run, run / "checkpoints" / ".." / "checkpoints" / "best.ckpt") is not None
    # last.ckpt, or another run's best.ckpt (the same file name, other weights): not calibrated
    assert run_calibration(run, run / "checkpoints" / "last.ckpt") is None
    assert run_calibration(run, other / "checkpoints" / "best.ckpt") is None


def _tiny(table, *extra: str) -> list[str]:
    return ["data=parquet", f"data.path={table}", "data.target=direction", "data.group_col=symbol",
            "progress_bar=false", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
            "data.seq_length=4", "model.hidden_size=8", "model.num_layers=1", "optim.lr=0.01", *extra]


@pytest.fixture
def quiet_plots(monkeypatch):
    from seqtrain.report import run as report

    for name in ("plot_curves", "plot_predictions", "plot_equity", "plot_interpretation"):
        monkeypatch.setattr(report, name, lambda *args, **kwargs: None)


def test_temperature_is_fit_on_validation_only_and_reaches_predict_api_and_export(
        run_cli, tmp_path, monkeypatch, capsys, quiet_plots):
    table = synthetic.make_table(n_series=2, length=400)
    path = tmp_path / "demo.parquet"
    table.to_parquet(path, index=False)
    first = run_cli(*_tiny(path, "calibrate=temperature"))
    assert first.code == 0, first.err
    saved = json.loads((first.run_dir / "calibration.json").read_text())
    temperature = saved["temperature"]
    metrics = first.metrics()["calibration"]
    assert saved["method"] == "temperature" and abs(temperature - 1) > 0.01
    assert saved["validation_windows"] == first.metrics()["windows"]["val"]
    assert metrics["temperature"] == temperature and metrics["before"]["brier"] != metrics["brier"]
    assert (first.run_dir / "plots" / "calibration.png").is_file()
    assert "calibration (test, T=" in first.out

    # the last test rows changed: the same validation windows, the same temperature
    changed = table.copy()
    late = changed["time"] >= changed["time"].sort_values().iloc[-40]  # inside the last 15% (test)
    rng = np.random.default_rng(1)
    changed.loc[late, ["cycle_obs", "noise", "y"]] = rng.normal(0, 5, (late.sum(), 3)).astype(np.float32)
    changed.loc[late, "direction"] = rng.integers(0, 2, late.sum()).astype(np.int8)
    changed_path = tmp_path / "changed.parquet"
    changed.to_parquet(changed_path, index=False)
    second = run_cli(*_tiny(changed_path, "calibrate=temperature"))
    assert second.code == 0, second.err
    assert json.loads((second.run_dir / "calibration.json").read_text())["temperature"] == temperature
    assert second.metrics()["test"] != first.metrics()["test"]  # the test rows did change

    # predictions.parquet = seqtrain predict = the API, on every test window
    reported = pd.read_parquet(first.run_dir / "predictions.parquet")
    code, said = run_seqtrain(monkeypatch, capsys, "predict", f"run={first.run_dir}", f"data.path={path}",
                              f"output={tmp_path / 'predicted.parquet'}")
    assert code == 0, said
    keys = ["symbol", "window_end"]
    api = seqtrain.load(first.run_dir).predict(table)
    for predicted in (pd.read_parquet(tmp_path / "predicted.parquet"), api):
        joined = reported.merge(predicted, on=keys, suffixes=("", "_new"))
        assert len(joined) == len(reported)
        np.testing.assert_allclose(joined["prob_1_new"], joined["prob_1"], rtol=1e-5, atol=1e-6)

    # the TorchScript export gives the calibrated probabilities, checked against calibrated PyTorch
    code, said = run_seqtrain(monkeypatch, capsys, "export", f"run={first.run_dir}", "format=torchscript")
    assert code == 0, said
    record = json.loads((first.run_dir / "export" / "export.json").read_text())["torchscript"]
    assert record["temperature"] == temperature and record["max_abs_difference"] < 1e-4
    predictor = seqtrain.load(first.run_dir).predictor(device="cpu")
    newest = predictor.predict_frame(table, newest=True)
    state = predictor.state
    x = np.stack([(rows[state.inputs].to_numpy(np.float64)[-state.window.seq_length:] - state.scaler.mean)
                  / state.scaler.std for _, rows in table.groupby("symbol", sort=True)]).astype(np.float32)
    scripted = torch.jit.load(str(first.run_dir / "export" / "model.pt"))
    with torch.inference_mode():
        got = scripted(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got[:, 1], newest.sort_values("symbol")["prob_1"], rtol=1e-4, atol=1e-5)


def _noise_table(path, n_series: int = 4, rows: int = 5000):
    rng = np.random.default_rng(0)
    frames = [pd.DataFrame({"time": np.arange(rows), "symbol": f"S{s}", "x": rng.normal(size=rows),
                            "y": rng.normal(size=rows)}) for s in range(n_series)]
    table = pd.concat(frames, ignore_index=True)
    table.to_parquet(path, index=False)
    return table


@pytest.mark.parametrize("loss, method", [("mse", "split_conformal"), ("quantile", "cqr")])
def test_conformal_intervals_cover_exchangeable_noise_and_reach_predict_and_the_api(
        run_cli, tmp_path, monkeypatch, capsys, quiet_plots, loss, method):
    path = tmp_path / "noise.parquet"
    table = _noise_table(path)  # 4 series: their residuals pooled
    result = run_cli("data=parquet", f"data.path={path}", "data.target=y", "data.group_col=symbol",
                     "task=regression", f"loss={loss}", "data.seq_length=4", "data.batch_size=512",
                     "data.output_steps=2", "progress_bar=false", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "model.hidden_size=4", "model.num_layers=1",
                     "data.leakage_audit=off")
    assert result.code == 0, result.err
    metrics = result.metrics()
    intervals = metrics["intervals"]
    assert intervals["method"] == method and metrics["windows"]["test"] >= 2900
    for name, nominal in (("80", 0.8), ("95", 0.95)):
        level = intervals["levels"][name]
        assert level["nominal"] == nominal and abs(level["coverage"] - nominal) <= 0.03, level
        assert all(abs(c - nominal) <= 0.04 for c in level["coverage_by_step"])
    assert f"80% interval ({method.replace('_', ' ')})" in result.out

    reported = pd.read_parquet(result.run_dir / "predictions.parquet")
    saved = json.loads((result.run_dir / "calibration.json").read_text())
    first_step = reported[reported["step"] == 1]
    around = first_step["y_pred"] if loss == "mse" else first_step["q0.9"]  # CQR: the outermost quantiles
    np.testing.assert_allclose(first_step["hi_80"] - around, saved["margins"]["80"][0], rtol=1e-5, atol=1e-6)
    recent = table[table["time"] >= 4900]  # test windows of every series
    recent_path = tmp_path / "recent.parquet"
    recent.to_parquet(recent_path, index=False)
    code, said = run_seqtrain(monkeypatch, capsys, "predict", f"run={result.run_dir}",
                              f"data.path={recent_path}", f"output={tmp_path / 'predicted.parquet'}")
    assert code == 0, said
    keys = ["symbol", "window_end", "step"]
    api = seqtrain.load(result.run_dir).predict(recent)
    for predicted in (pd.read_parquet(tmp_path / "predicted.parquet"), api):
        joined = reported.merge(predicted, on=keys, suffixes=("", "_new"))
        assert len(joined) == 4 * (100 - 4 - 1) * 2  # per series: windows of 4 rows with 2 steps to come
        for column in ("lo_80", "hi_80", "lo_95", "hi_95"):
            np.testing.assert_allclose(joined[f"{column}_new"], joined[column], rtol=1e-5, atol=1e-6)
