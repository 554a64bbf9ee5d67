"""The one atomic writer: a write that fails at any point (the serialiser midway, or the rename)
leaves the previous file byte for byte and no temporary behind; concurrent writers never share a
temporary; and no module but seqtrain/files.py writes or renames an artefact by hand."""

from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from lightning.fabric.plugins.io import torch_io
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from seqtrain import files
from seqtrain.engine.checkpoints import AtomicCheckpointIO
from seqtrain.errors import SeqtrainError
from seqtrain.run.train import open_run_dir

matplotlib.use("Agg")

PREVIOUS = b"the previous file, whole\n"
FRAME = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})


def _source(folder: Path) -> Path:
    source = folder / "source.bin"
    source.write_bytes(b"new bytes " * 100)
    return source


# kind: (the write, how to read back what it wrote, the serialiser it calls: owner, attribute and
# the position of the path it writes to among the call's arguments)
WRITERS = {
    "bytes": (lambda p: files.write_bytes(p, b"new"), Path.read_bytes, (Path, "write_bytes", 0)),
    "text": (lambda p: files.write_text(p, "new"), Path.read_text, (Path, "write_text", 0)),
    "json": (lambda p: files.write_json(p, {"a": 1}), lambda p: json.loads(p.read_text()),
             (Path, "write_text", 0)),
    "merged json": (lambda p: files.merge_into_json(p, {"b": 2}), lambda p: json.loads(p.read_text()),
                    (Path, "write_text", 0)),
    "csv rows": (lambda p: files.write_csv_rows(p, [{"a": 1}, {"a": 2, "b": 3}]),
                 lambda p: list(csv.reader(p.open())), (csv.DictWriter, "writerows", None)),
    "csv frame": (lambda p: files.write_csv(p, FRAME), pd.read_csv, (pd.DataFrame, "to_csv", 1)),
    "parquet frame": (lambda p: files.write_parquet(p, FRAME), pd.read_parquet,
                      (pd.DataFrame, "to_parquet", 1)),
    "parquet table": (lambda p: files.write_table(p, pa.Table.from_pandas(FRAME)), pq.read_table,
                      (pq, "write_table", 1)),
    "figure": (lambda p: files.save_figure(p.with_suffix(".png"), Figure()), None, (Figure, "savefig", 1)),
    "config": (lambda p: files.save_config(p, OmegaConf.create({"a": 1})), OmegaConf.load,
               (OmegaConf, "save", 1)),
    "copy": (lambda p: files.copy_file(_source(p.parent), p), Path.read_bytes, (shutil, "copyfile", 1)),
    "checkpoint": (lambda p: AtomicCheckpointIO().save_checkpoint({"w": torch.ones(2)}, p),
                   lambda p: torch.load(p)["w"].tolist(), (torch_io, "_atomic_save", 1)),
}


def _target(tmp_path: Path, kind: str) -> Path:
    target = tmp_path / ("artefact.png" if kind == "figure" else "artefact")
    target.write_bytes(PREVIOUS if kind != "merged json" else b'{"a": 1}')
    return target


def _left(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name != "source.bin")


@pytest.mark.parametrize("kind", WRITERS)
def test_a_write_that_fails_midway_leaves_the_previous_file(tmp_path, monkeypatch, kind):
    write, _, (owner, name, position) = WRITERS[kind]
    target = _target(tmp_path, kind)
    before = target.read_bytes()

    def half_then_fail(*args, **kwargs):
        if position is None:  # csv rows: the first row written, then the failure
            args[0].writerow(args[1][0])
        else:
            with open(args[position], "wb") as half:  # not through the patched serialiser
                half.write(b"half a fil")
        raise OSError("no space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(owner, name, half_then_fail)
        with pytest.raises(OSError, match="no space"):
            write(target.with_suffix(""))
    assert target.read_bytes() == before
    assert _left(tmp_path) == [target.name]


@pytest.mark.parametrize("kind", WRITERS)
def test_a_write_killed_before_the_rename_leaves_the_previous_file(tmp_path, monkeypatch, kind):
    write, read, _ = WRITERS[kind]
    target = _target(tmp_path, kind)
    before = target.read_bytes()

    def killed(*args):
        raise KeyboardInterrupt  # what a signal's handler raises, between the write and the rename

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            write(target.with_suffix(""))
    assert target.read_bytes() == before
    assert _left(tmp_path) == [target.name]
    write(target.with_suffix(""))  # and unhindered, the new content is there, alone
    assert target.read_bytes() != before
    assert _left(tmp_path) == [target.name]
    if read is not None:
        read(target)


def test_what_each_writer_writes(tmp_path):
    files.write_json(tmp_path / "a.json", {"x": [1, 2]})
    assert (tmp_path / "a.json").read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}'
    files.merge_into_json(tmp_path / "a.json", {"y": 3})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2], "y": 3}
    files.write_csv_rows(tmp_path / "rows.csv", [{"a": 1}, {"a": 2, "b": 3}])
    assert (tmp_path / "rows.csv").read_bytes() == b"a,b\r\n1,\r\n2,3\r\n"
    files.write_csv(tmp_path / "frame.csv", FRAME)
    assert (tmp_path / "frame.csv").read_text() == FRAME.to_csv(index=False)
    files.write_parquet(tmp_path / "frame.parquet", FRAME)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "frame.parquet"), FRAME)
    files.save_figure(tmp_path / "plot.png", Figure(figsize=(1, 1)))
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"  # the target's suffix, not .tmp


def test_without_overwrite_an_existing_file_is_never_replaced(tmp_path):
    target = tmp_path / "preds.parquet"
    target.write_bytes(PREVIOUS)
    with pytest.raises(SeqtrainError, match="^output: .* appeared while this command ran"), \
            files.atomic(target, overwrite=False, key="output") as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == PREVIOUS
    assert _left(tmp_path) == [target.name]


def test_two_writers_in_one_folder_never_share_a_temporary(tmp_path, monkeypatch):
    with files.atomic(tmp_path / "metrics.json") as a, files.atomic(tmp_path / "metrics.csv") as b, \
            files.atomic(tmp_path / "metrics.json") as c:
        assert len({a, b, c}) == 3 and all(str(os.getpid()) in t.name for t in (a, b, c))
        a.write_text("a"), b.write_text("b"), c.write_text("c")
    assert (tmp_path / "metrics.json").read_text() == "a"  # the last to finish
    assert _left(tmp_path) == ["metrics.csv", "metrics.json"]
    draws = iter(["same", "same", "other"])  # a random part drawn twice is drawn again
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(draws))
    first, second = files.temporary_beside(tmp_path / "x"), files.temporary_beside(tmp_path / "x")
    assert first != second and second.name.endswith(".other.tmp")


# calls that write or move a file; outside seqtrain/files.py each must go through it
WRITE_METHODS = {"write_text", "write_bytes", "to_csv", "to_parquet", "to_json", "savefig", "write_table",
                 "open"}
WRITE_CALLS = {"open", "json.dump", "torch.save", "OmegaConf.save", "os.replace", "os.rename", "os.link",
               "shutil.move", "shutil.copy", "shutil.copy2", "shutil.copyfile", "pq.write_table"}
ALLOWED = {  # what is no artefact written in one go
    "(folder / f'rank{i}.log').open('w')",  # a DDP rank's log, streamed while it runs
    "(job.folder / 'train.log').open('a')",  # a parallel fold's output, streamed while it runs
    "(run_dir / 'train.log').open('a')",  # a fold process's traceback, appended to its log
    "writer.write_table(table.cast(writer.schema))",  # predict's parts, into atomic()'s temporary
    "out.iloc[:, 0].rename('y_pred')", "naive.rename(X.index.name)", "y_val.rename(target)",
    "books[job].rename(job)",  # pandas names
}


def _hand_written(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        moves = (isinstance(func, ast.Attribute) and func.attr in ("replace", "rename")
                 and len(node.args) == 1 and not node.keywords)  # Path.replace(target), not str's
        writes = isinstance(func, ast.Attribute) and func.attr in WRITE_METHODS
        if (moves or writes or ast.unparse(func) in WRITE_CALLS) and ast.unparse(node) not in ALLOWED:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_writes_an_artefact_by_hand():
    package = Path(files.__file__).parent
    found = {str(p.relative_to(package)): hits for p in sorted(package.rglob("*.py"))
             if p != Path(files.__file__) and (hits := _hand_written(ast.parse(p.read_text())))}
    assert not found, f"write through seqtrain.files instead: {found}"
    hand_rolled = "tmp.replace(path)\nos.replace(a, b)\nframe.to_csv(p)\n'a'.replace('a', 'b')"
    caught = _hand_written(ast.parse(hand_rolled))
    assert len(caught) == 3  # the check itself sees a hand-rolled writer


def test_a_killed_writers_temporary_is_removed_when_the_run_folder_opens_again(tmp_path):
    """Each write has its own temporary, so a kill mid-write (a checkpoint's, say) would leave
    one behind per kill; the next try at the run removes those whose process is gone."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    killed = [checkpoints / f".last.ckpt.{dead_pid}.0123abcd.tmp",
              tmp_path / f".metrics.csv.{dead_pid}.89abcdef.tmp"]
    live = checkpoints / f".best.ckpt.{os.getpid()}.0123abcd.tmp"  # a writer still at work
    users = [checkpoints / ".notes.tmp", tmp_path / f".x.{dead_pid}.tmp"]  # not names seqtrain gives
    for path in (*killed, live, *users):
        path.write_bytes(b"x")
    open_run_dir(tmp_path, resumed=True)
    assert not any(p.exists() for p in killed)
    assert live.exists() and all(p.exists() for p in users)


# a frame whose CSV takes seconds to write, pandas writing it chunk by chunk into the temporary
SLOW_WRITER = """
import sys
import numpy as np
import pandas as pd
from seqtrain import files
files.write_csv(sys.argv[1], pd.DataFrame(np.random.default_rng(0).random((2_000_000, 4))))
"""


def test_a_writer_killed_mid_write_leaves_the_previous_file_and_a_temporary_removed_later(tmp_path):
    """A real SIGKILL while the new content is half written: no handler runs, so the temporary
    stays (half full) beside the previous file, which is whole; the next look removes it."""
    target = tmp_path / "artefact.csv"
    target.write_bytes(PREVIOUS)
    writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)],
                              env={**os.environ, "PYTHONPATH": str(Path(files.__file__).parents[1])})
    try:
        deadline = time.monotonic() + 30  # the writer's imports, on a busy machine
        pattern = f".artefact.csv.{writer.pid}.*.tmp"
        while not (half := [p for p in tmp_path.glob(pattern) if p.stat().st_size]):
            assert writer.poll() is None and time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.005)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL  # killed, not finished
    assert target.read_bytes() == PREVIOUS
    assert _left(tmp_path) == sorted([target.name, half[0].name])  # what a kill leaves
    assert files.remove_stale_temporaries(tmp_path) == half
    assert _left(tmp_path) == [target.name] and target.read_bytes() == PREVIOUS


def test_a_folder_that_cannot_be_written_is_one_line_naming_the_key(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SeqtrainError, match=r"^output: cannot write into .*a_file: "), \
            files.atomic(tmp_path / "a_file" / "predictions.parquet", key="output"):
        pass
    with pytest.raises(OSError), files.atomic(tmp_path / "a_file" / "x.json"):  # no key: the caller's to word
        pass
