"""The data state on disk: a run folder written by an earlier version of seqtrain still loads, as
the same state, and predicts what it predicted then."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from seqtrain.data.state import DataState
from seqtrain.errors import SeqtrainError
from tests.conftest import run_seqtrain

EARLIER_RUN = Path(__file__).parents[1] / "fixtures" / "run_d82c0df"  # written at commit d82c0df


def test_an_earlier_runs_data_state_loads_as_it_was_saved():
    saved = json.loads((EARLIER_RUN / "data_state.json").read_text())
    state = DataState.load(EARLIER_RUN / "data_state.json")
    assert state.to_dict() == saved  # every key kept: the fit summary beside the fitted state
    assert state.inputs == saved["inputs"] == [*saved["features"], saved["target"]]  # derived
    assert state.fit_summary == {key: saved[key] for key in ("split", "rows", "windows")}


def test_saved_inputs_that_are_not_the_derived_columns_are_refused(tmp_path):
    saved = json.loads((EARLIER_RUN / "data_state.json").read_text())
    saved["inputs"] = saved["inputs"][:-1]  # the target's history missing from the saved inputs
    path = tmp_path / "data_state.json"
    path.write_text(json.dumps(saved))
    with pytest.raises(SeqtrainError, match="not a data state this version of seqtrain can read"):
        DataState.load(path)


def test_an_earlier_run_predicts_what_it_predicted(monkeypatch, capsys, tmp_path):
    output = tmp_path / "predictions.parquet"
    code, out = run_seqtrain(monkeypatch, capsys, "predict", f"run={EARLIER_RUN}",
                             f"data.path={EARLIER_RUN / 'data' / 'synthetic.parquet'}", f"output={output}")
    assert code == 0, out
    expected = pd.read_parquet(EARLIER_RUN.parent / "run_d82c0df.predict.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(output), expected, check_exact=True)
