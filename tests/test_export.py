"""``seqtrain export``: the network as TorchScript or ONNX, run without seqtrain, gives what
``seqtrain predict`` gives on the same windows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from seqtrain.run.predict import Predictor
from tests.conftest import TINY_MODELS, TINY_RUN, run_seqtrain

EXPORTABLE = sorted(set(TINY_MODELS) - {"tft"})
# what a user of the .pt file sees; seqtrain's own check keeps it quiet
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def run_export(monkeypatch, capsys, *args: str):
    return run_seqtrain(monkeypatch, capsys, "export", *args)


def windows_without_seqtrain(table: pd.DataFrame, state: dict) -> tuple[np.ndarray, np.ndarray]:
    """What the README tells a user to do with data_state.json alone: scale the input columns,
    cut the newest window of each series; ``(series, L, F)`` float32 and the series names."""
    mean, std = np.asarray(state["scaler"]["mean"]), np.asarray(state["scaler"]["std"])
    windows, names = [], []
    for name, rows in table.groupby(state["group_col"], sort=True):
        x = (rows[state["inputs"]].to_numpy(np.float64) - mean) / std
        windows.append(x[-state["seq_length"]:].astype(np.float32))
        names.append(name)
    return np.stack(windows), np.asarray(names)


@pytest.mark.parametrize("model", EXPORTABLE)
def test_exports_reproduce_pytorch_and_seqtrain_predict(run_cli, monkeypatch, capsys, model):
    trained = run_cli(f"model={model}", "task=regression", "data.output_steps=2", *TINY_RUN,
                      *TINY_MODELS[model])
    assert trained.code == 0, trained.err
    predictor = Predictor.from_run(trained.run_dir, device="cpu")
    for fmt, file in (("torchscript", "model.pt"), ("onnx", "model.onnx")):
        code, said = run_export(monkeypatch, capsys, f"run={trained.run_dir}", f"format={fmt}")
        assert code == 0, said
        folder = trained.run_dir / "export"
        record = json.loads((folder / "export.json").read_text())[fmt]
        assert record["file"] == file and record["max_abs_difference"] < 1e-4
        assert (folder / "data_state.json").read_text() == (trained.run_dir / "data_state.json").read_text()

    # the newest window of each series, scaled and cut by hand, through both files
    table = pd.read_parquet(trained.run_dir / "data" / "synthetic.parquet")
    state = json.loads((folder / "data_state.json").read_text())
    x, names = windows_without_seqtrain(table, state)
    newest = predictor.predict_frame(table, newest=True)
    expected = newest.pivot(index="symbol", columns="step", values="y_pred")
    expected = expected.loc[names].to_numpy()
    inputs = [x]
    if "future" in record["inputs"]:  # the known-future columns at the label rows: beyond the table
        pytest.skip("the newest windows' label rows are beyond the table")
    scripted = torch.jit.load(str(folder / "model.pt"))
    with torch.inference_mode():
        got = scripted(*map(torch.from_numpy, inputs)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model", ["informer", "tcn", "nhits"])
def test_models_reading_future_and_mask_export_with_those_inputs(run_cli, monkeypatch, capsys, model):
    trained = run_cli(f"model={model}", "task=classification", "data.pad_short=true",
                      "data.known_future=[cycle_quad]", *TINY_RUN, *TINY_MODELS[model])
    assert trained.code == 0, trained.err
    code, said = run_export(monkeypatch, capsys, f"run={trained.run_dir}", "format=onnx")
    assert code == 0, said
    record = json.loads((trained.run_dir / "export" / "export.json").read_text())["onnx"]
    reads_future = model != "tcn"
    assert record["inputs"] == ["x", *(["future"] if reads_future else []), "mask"]
    assert record["outputs"] == ["probs"] and record["max_abs_difference"] < 1e-4


def test_a_recurrent_model_with_padded_windows_says_why_in_one_line(run_cli, monkeypatch, capsys):
    trained = run_cli("model=lstm", "data.pad_short=true", *TINY_RUN, *TINY_MODELS["lstm"])
    assert trained.code == 0, trained.err
    code, said = run_export(monkeypatch, capsys, f"run={trained.run_dir}", "format=onnx")
    assert code == 2 and "Traceback" not in said and len(said.strip().splitlines()) == 1, said
    assert "data.pad_short=true" in " ".join(said.split())
    assert not (trained.run_dir / "export" / "model.onnx").exists()


def test_tft_and_bad_arguments_are_one_line(run_cli, monkeypatch, capsys):
    trained = run_cli("model=tft", *TINY_RUN, *TINY_MODELS["tft"])
    assert trained.code == 0, trained.err
    for args, expected in (
        ([f"run={trained.run_dir}"], "model=tft cannot be exported: pytorch-forecasting's network"),
        ([f"run={trained.run_dir}", "format=pickle"], "format='pickle'; choose onnx or torchscript"),
        (["format=onnx"], "export: run= is required"),
    ):
        code, said = run_export(monkeypatch, capsys, *args)
        assert code == 2 and "Traceback" not in said and len(said.strip().splitlines()) == 1, said
        assert expected in " ".join(said.split())
    assert not (trained.run_dir / "export").exists() or not any((trained.run_dir / "export").iterdir())


@pytest.mark.parametrize("value", ["flase", "yes", "1", ""])
def test_overwrite_is_true_or_false_and_nothing_else(monkeypatch, capsys, value):
    code, said = run_export(monkeypatch, capsys, "run=RUN", f"overwrite={value}")
    assert code == 2 and "Traceback" not in said and len(said.strip().splitlines()) == 1, said
    assert f"export: overwrite={value!r}; choose true or false" in " ".join(said.split())


@pytest.mark.parametrize("model", ["lstm", "tcn"])
def test_static_codes_and_the_series_embedding_export(run_cli, monkeypatch, capsys, model):
    trained = run_cli(f"model={model}", "task=regression", *TINY_RUN, *TINY_MODELS[model],
                      "data.generator.name=load", "data.generator.static=true", "data.static=[peak,region]",
                      "model.series_embedding=4")
    assert trained.code == 0, trained.err
    for fmt in ("torchscript", "onnx"):
        code, said = run_export(monkeypatch, capsys, f"run={trained.run_dir}", f"format={fmt}",
                                "overwrite=true")
        assert code == 0, said
        record = json.loads((trained.run_dir / "export" / "export.json").read_text())[fmt]
        assert record["max_abs_difference"] < 1e-4
