"""No command loses a file: ``seqtrain predict`` and ``seqtrain export`` never replace the table
they read, a run's own files, or an earlier output (unless ``overwrite=true``, and then only
their own outputs); a sweep never starts in an earlier sweep's folder. And both commands find
their model in a walk-forward run: ``fold=K``, by default the last fold.

One tiny walk-forward run (two folds) serves every test: each ``fold_NN/`` is a run folder like
any other, so the folds stand in for plain runs too.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqtrain import cli
from tests.conftest import TINY, run_seqtrain

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def walk_forward_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("no_overwrite") / "run"
    args = [*TINY, "trainer.max_epochs=1", "data.generator.length=200", "data.seq_length=8",
            "eval=walk_forward", "eval.folds=2", "eval.test_size=0.15", f"hydra.run.dir={run_dir}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["seqtrain", *args])
        try:
            cli.main()
        except SystemExit as exc:
            assert exc.code in (0, None)
    assert json.loads((run_dir / "metrics.json").read_text())["eval"] == "walk_forward"
    return run_dir


def fingerprint(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under ``folder`` (but those under the ``skip`` folders) and its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()
            and not any(part in skip for part in p.relative_to(folder).parts)}


def refused(code: int, said: str, *expected: str) -> None:
    assert code == 2 and "Traceback" not in said and len(said.strip().splitlines()) == 1, said
    for text in expected:
        assert text in " ".join(said.split()), said


@pytest.fixture
def table(walk_forward_run, tmp_path) -> Path:
    """A copy of the run's table outside it, to predict on."""
    path = tmp_path / "bars.parquet"
    path.write_bytes((walk_forward_run / "data" / "synthetic.parquet").read_bytes())
    return path


def test_predicting_twice_into_one_file_keeps_the_first(walk_forward_run, table, tmp_path, monkeypatch,
                                                        capsys):
    output = tmp_path / "preds.parquet"
    run = f"run={walk_forward_run / 'fold_01'}"
    code, said = run_seqtrain(monkeypatch, capsys, "predict", run, f"data.path={table}", f"output={output}")
    assert code == 0, said
    first = output.read_bytes()
    code, said = run_seqtrain(monkeypatch, capsys, "predict", run, f"data.path={table}", f"output={output}",
                              "newest=true")
    refused(code, said, f"output: {output} already exists", "overwrite=true")
    assert output.read_bytes() == first
    code, said = run_seqtrain(monkeypatch, capsys, "predict", run, f"data.path={table}", f"output={output}",
                              "newest=true", "overwrite=true")
    assert code == 0, said
    assert len(pd.read_parquet(output)) == 3  # replaced, as asked: the newest window of each series
    assert not list(tmp_path.glob("*.tmp"))


def test_predict_never_writes_onto_the_table_it_reads(walk_forward_run, table, tmp_path, monkeypatch,
                                                      capsys):
    folder = tmp_path / "parts"  # a table that is a folder of Parquet files
    folder.mkdir()
    (folder / "part-0.parquet").write_bytes(table.read_bytes())
    link = tmp_path / "link.parquet"
    link.symlink_to(table)
    monkeypatch.chdir(tmp_path)
    before = fingerprint(tmp_path)
    run = f"run={walk_forward_run / 'fold_01'}"
    for data, output in ((table, table), ("bars.parquet", "./bars.parquet"), (table, link),
                         (folder, folder / "part-0.parquet"), (folder, folder / "part-1.parquet")):
        for overwrite in ([], ["overwrite=true"]):
            code, said = run_seqtrain(monkeypatch, capsys, "predict", run, f"data.path={data}",
                                      f"output={output}", *overwrite)
            refused(code, said, "the table being predicted (data.path), which is never overwritten")
    assert fingerprint(tmp_path) == before


def test_predict_never_writes_onto_a_runs_own_files(walk_forward_run, table, monkeypatch, capsys):
    fold = walk_forward_run / "fold_01"
    before = fingerprint(walk_forward_run, skip=("predictions",))
    for output in (walk_forward_run / "predictions.parquet", walk_forward_run / "metrics.json",
                   fold / "predictions.parquet", fold / "data_state.json", fold / "checkpoints" / "best.ckpt",
                   fold / ".hydra" / "config.yaml", fold / "data" / "new.parquet", fold):
        for overwrite in ([], ["overwrite=true"]):
            code, said = run_seqtrain(monkeypatch, capsys, "predict", f"run={fold}", f"data.path={table}",
                                      f"output={output}", *overwrite)
            refused(code, said, "whose files are never overwritten")
    # the run's own table, through the run's own folder
    code, said = run_seqtrain(monkeypatch, capsys, "predict", f"run={fold}",
                              f"data.path={walk_forward_run / 'data' / 'synthetic.parquet'}",
                              f"output={walk_forward_run / 'data' / 'synthetic.parquet'}", "overwrite=true")
    refused(code, said, "never overwritten")
    assert fingerprint(walk_forward_run, skip=("predictions",)) == before


def test_predict_and_export_take_a_fold_of_a_walk_forward_run(walk_forward_run, table, monkeypatch, capsys):
    code, said = run_seqtrain(monkeypatch, capsys, "predict", f"run={walk_forward_run}", f"data.path={table}")
    assert code == 0, said
    last = walk_forward_run / "fold_01" / "predictions" / "bars.parquet"  # the last fold's model
    assert str(last) in " ".join(said.split())
    code, said = run_seqtrain(monkeypatch, capsys, "predict", f"run={walk_forward_run}", f"data.path={table}",
                              "fold=0", "newest=true")
    assert code == 0, said
    first = pd.read_parquet(walk_forward_run / "fold_00" / "predictions" / "bars.parquet")
    newest = pd.read_parquet(last).groupby("symbol").tail(1)  # the same windows, another fold's model
    assert len(first) == 3 and list(first["window_end"]) == list(newest["window_end"])
    assert not np.allclose(first["prob_1"], newest["prob_1"])
    for command in (["predict", f"data.path={table}"], ["export"]):
        code, said = run_seqtrain(monkeypatch, capsys, *command, f"run={walk_forward_run}", "fold=7")
        refused(code, said, f"fold=7: {walk_forward_run} has no fold_07; its folds are fold_00, fold_01")
        code, said = run_seqtrain(monkeypatch, capsys, *command, f"run={walk_forward_run / 'fold_00'}",
                                  "fold=1")
        refused(code, said, "is not a walk-forward run")
    code, said = run_seqtrain(monkeypatch, capsys, "export", f"run={walk_forward_run}", "format=torchscript")
    assert code == 0, said
    record = json.loads((walk_forward_run / "fold_01" / "export" / "export.json").read_text())["torchscript"]
    assert record["checkpoint"].endswith(str(Path("fold_01", "checkpoints", "best.ckpt")))


def test_a_second_export_into_the_same_run_keeps_the_first(walk_forward_run, monkeypatch, capsys):
    folder = walk_forward_run / "fold_00" / "export"  # the run's own export folder
    run = f"run={walk_forward_run / 'fold_00'}"
    code, said = run_seqtrain(monkeypatch, capsys, "export", run, "format=torchscript")
    assert code == 0, said
    before = fingerprint(folder)
    code, said = run_seqtrain(monkeypatch, capsys, "export", run, "format=torchscript", "ckpt=last")
    refused(code, said, f"{folder / 'model.pt'} already exists", "overwrite=true")
    assert fingerprint(folder) == before
    # another format beside it: the first file, the data state and its record stay as they were
    code, said = run_seqtrain(monkeypatch, capsys, "export", run, "format=onnx")
    assert code == 0, said
    after = fingerprint(folder)
    assert {k: after[k] for k in ("model.pt", "data_state.json")} == {k: before[k] for k in
                                                                       ("model.pt", "data_state.json")}
    records = json.loads((folder / "export.json").read_text())
    assert set(records) == {"torchscript", "onnx"} and records["torchscript"]["file"] == "model.pt"
    # another run's export never joins it, whatever overwrite says
    code, said = run_seqtrain(monkeypatch, capsys, "export", f"run={walk_forward_run / 'fold_01'}",
                              "format=torchscript", f"output={folder}", "overwrite=true")
    refused(code, said, "holds another run's export")
    assert fingerprint(folder) == after
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_a_failed_export_with_overwrite_keeps_the_earlier_file(walk_forward_run, tmp_path, monkeypatch,
                                                               capsys):
    folder = tmp_path / "shipped"
    run = f"run={walk_forward_run / 'fold_00'}"
    code, said = run_seqtrain(monkeypatch, capsys, "export", run, "format=torchscript", f"output={folder}")
    assert code == 0, said
    before = fingerprint(folder)
    monkeypatch.setattr("seqtrain.run.export.check_export", lambda *args: 1.0)  # "differs from PyTorch"
    code, said = run_seqtrain(monkeypatch, capsys, "export", run, "format=torchscript", f"output={folder}")
    refused(code, said, "already exists")
    assert fingerprint(folder) == before
    code, said = run_seqtrain(monkeypatch, capsys, "export", run, "format=torchscript", f"output={folder}",
                              "overwrite=true")
    refused(code, said, "differs from PyTorch by 1")
    assert fingerprint(folder) == before
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_export_never_writes_into_a_runs_own_folders(walk_forward_run, monkeypatch, capsys):
    fold = walk_forward_run / "fold_00"
    before = fingerprint(walk_forward_run, skip=("export", "predictions"))
    for output in (fold, fold / "checkpoints", walk_forward_run, walk_forward_run / "plots"):
        for overwrite in ([], ["overwrite=true"]):
            code, said = run_seqtrain(monkeypatch, capsys, "export", f"run={fold}", "format=torchscript",
                                      f"output={output}", *overwrite)
            refused(code, said, "never overwritten")
    assert fingerprint(walk_forward_run, skip=("export", "predictions")) == before


def test_a_sweep_never_starts_in_an_earlier_sweeps_folder(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    for name, text in (("multirun.yaml", "earlier sweep"), ("summary.csv", "job,best_val\n0,0.5\n"),
                       ("0/.hydra/config.yaml", "seed: 1"), ("0/metrics.json", "{}")):
        (sweep / name).parent.mkdir(parents=True, exist_ok=True)
        (sweep / name).write_text(text)
    before = fingerprint(sweep)
    result = run_cli("-m", *TINY, "seed=2", run_dir=sweep)
    refused(result.code, result.err, f"hydra.sweep.dir: {sweep} already holds a sweep; choose a new folder")
    assert fingerprint(sweep) == before


def test_training_never_replaces_a_table_named_without_data_parquet(run_cli, bars):
    """``seqtrain data.path=bars.parquet`` forgetting ``data=parquet``: the demo table would be
    written over the user's own; the run stops before writing anything."""
    before = bars.read_bytes()
    result = run_cli(*TINY, f"data.path={bars}")
    assert result.code == 2, result.err
    assert "data.path" in result.err and "add data=parquet" in " ".join(result.err.split())
    assert bars.read_bytes() == before


def test_a_run_never_starts_in_a_folder_of_other_files(run_cli, tmp_path):
    folder = tmp_path / "mine"
    (folder / "plots").mkdir(parents=True)
    (folder / "predictions.parquet").write_bytes(b"a user's own file")
    result = run_cli(*TINY, run_dir=folder)
    assert result.code == 2 and "choose a new or empty folder" in " ".join(result.err.split())
    assert (folder / "predictions.parquet").read_bytes() == b"a user's own file"
    assert sorted(p.name for p in folder.iterdir()) == ["plots", "predictions.parquet"]


def test_a_run_refused_on_its_data_leaves_a_folder_the_mended_command_can_use(run_cli, tmp_path, bars):
    folder = tmp_path / "retry"
    table = ["data=parquet", f"data.path={bars}", "data.target=close", "data.group_col=symbol",
             "task=regression", "trainer=debug", "progress_bar=false", "plots=false", "model.hidden_size=8"]
    refused = run_cli(*table, "data.features=[no_such_column]", run_dir=folder)
    assert refused.code == 2 and "no_such_column" in refused.err, refused.err
    mended = run_cli(*table, run_dir=folder)
    assert mended.code == 0, mended.err
    assert (folder / "metrics.json").exists()
