"""A run folder written by an earlier seqtrain (tests/fixtures/README.md) still loads: ``seqtrain
predict`` gives what that version's gave, ``seqtrain.load`` opens it, ``seqtrain export`` exports
it, and none of them writes into the folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import seqtrain
from tests.conftest import run_seqtrain

FIXTURES = Path(__file__).parent / "fixtures"
OLD_RUN = FIXTURES / "run_d82c0df"  # LSTM, regression, output_steps=2
OLD_PREDICTIONS = FIXTURES / "run_d82c0df.predict.parquet"  # that version's `seqtrain predict`
TABLE = OLD_RUN / "data" / "synthetic.parquet"


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too), by relative path, with its content's hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def untouched_old_run():
    """The old run folder, checked to be exactly as committed once the test is done."""
    before = _files(OLD_RUN)
    yield OLD_RUN
    assert _files(OLD_RUN) == before, "a command wrote into the old run folder"


def test_predict_on_an_old_run_gives_what_its_version_gave(untouched_old_run, tmp_path, monkeypatch, capsys):
    output = tmp_path / "predictions.parquet"
    code, said = run_seqtrain(monkeypatch, capsys, "predict", f"run={untouched_old_run}",
                              f"data.path={TABLE}", f"output={output}")
    assert code == 0, said
    got, expected = pq.read_table(output), pq.read_table(OLD_PREDICTIONS)
    assert got.num_rows == 1710 and set(got.column("step").to_pylist()) == {1, 2}
    assert got.schema.remove_metadata() == expected.schema.remove_metadata()
    assert got.equals(expected)  # every value exactly, float bits included


def test_load_of_an_old_run_predicts_as_its_version_did(untouched_old_run):
    run = seqtrain.load(untouched_old_run)
    assert run.metrics == json.loads((untouched_old_run / "metrics.json").read_text())
    got = run.predict(pd.read_parquet(TABLE), device="cpu")
    expected = pd.read_parquet(OLD_PREDICTIONS)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_export_of_an_old_run(untouched_old_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "export"
    code, said = run_seqtrain(monkeypatch, capsys, "export", f"run={untouched_old_run}", "format=torchscript",
                              f"output={folder}")
    assert code == 0, said
    record = json.loads((folder / "export.json").read_text())["torchscript"]
    assert record["file"] == "model.pt" and record["max_abs_difference"] < 1e-4
    assert (folder / "data_state.json").read_bytes() == (untouched_old_run / "data_state.json").read_bytes()
