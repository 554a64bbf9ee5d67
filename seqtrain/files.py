"""The one way an artefact reaches its path: written whole into a temporary file beside it,
flushed to disk and renamed over it in one step, so a kill at any moment leaves either the
previous file or the new one, never half of either, and no temporary behind on an error.

Each write has a temporary of its own (the process id and a random part in its name), so two
writers in one folder - ``metrics.json`` and ``metrics.csv``, or two processes - never share one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from seqtrain.errors import SeqtrainError, first_line

TEMPORARY_SUFFIX = ".tmp"
# what temporary_beside names a temporary: ``.NAME.PID.RANDOM.tmp``
TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}" + re.escape(TEMPORARY_SUFFIX))


def temporary_beside(path: Path, key: str | None = None) -> Path:
    """A new empty file in ``path``'s folder (made if needed), named after it but unique, so it
    can never be an existing file of the user's. With ``key``, a folder that cannot be written
    is a one-line error naming that config key."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
            try:  # created here, exclusively: the mode the umask gives any new file
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            except FileExistsError:
                continue
            return tmp
    except OSError as exc:
        if key is None:
            raise
        raise SeqtrainError(f"{key}: cannot write into {path.parent}: {first_line(exc)}") from None


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries in ``folder`` (not its subfolders) whose writer was killed (its
    process is gone): each write has a temporary of its own, so nothing else would ever reuse or
    remove them (a killed checkpoint write leaves one as large as the checkpoint). Those of a
    live process stay."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMPORARY_SUFFIX}"):
        found = TEMPORARY_NAME.fullmatch(tmp.name)
        if found and tmp.is_file() and not _alive(int(found["pid"])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (PermissionError), or no way to tell: keep its file
        return True
    return True


def publish(tmp: Path, path: Path, overwrite: bool = True, key: str = "output") -> None:
    """``tmp`` flushed to disk and renamed to ``path`` in one step. Without ``overwrite`` it is
    linked first, which fails rather than replace a file that appeared meanwhile (e.g. a second
    command choosing the same name); a file system without hard links gets a check just before
    the rename."""
    _flush(tmp)
    if overwrite:
        os.replace(tmp, path)
        return
    appeared = SeqtrainError(f"{key}: {path} appeared while this command ran; nothing was replaced "
                             "(run it again)")
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise appeared from None
    except OSError:  # no hard links here (some network and FAT file systems)
        if path.exists():
            raise appeared from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic(path: str | Path, overwrite: bool = True, key: str | None = None) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content into; published (see ``publish``) when
    the block ends normally, removed when it raises."""
    path = Path(path)
    tmp = temporary_beside(path, key)
    try:
        yield tmp
        publish(tmp, path, overwrite, key or "output")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, payload: Any, default: Callable | None = str) -> None:
    """``payload`` as JSON indented by 2 (``default`` turns what JSON lacks into something it has)."""
    write_text(path, json.dumps(payload, indent=2, default=default))


def merge_into_json(path: str | Path, entries: dict, default: Callable | None = str) -> None:
    """Set ``entries``' keys in the JSON object at ``path`` (created if absent), keeping its
    other keys."""
    path = Path(path)
    current = json.loads(path.read_text()) if path.exists() else {}
    write_json(path, {**current, **entries}, default=default)


def write_csv_rows(path: str | Path, rows: list[dict]) -> None:
    """``rows`` as CSV, one column per key any row has, in the order they first appear."""
    import csv

    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def write_csv(path: str | Path, frame) -> None:
    """A pandas frame as CSV, without its index."""
    with atomic(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_parquet(path: str | Path, frame) -> None:
    """A pandas frame as Parquet, without its index."""
    with atomic(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_table(path: str | Path, table, key: str | None = None) -> None:
    """A pyarrow table as Parquet; ``key`` as for ``atomic``."""
    import pyarrow.parquet as pq

    with atomic(path, key=key) as tmp:
        pq.write_table(table, tmp)


def save_figure(path: str | Path, fig, **options) -> None:
    """A matplotlib figure, in the format ``path``'s suffix names (the temporary's says nothing)."""
    with atomic(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), **options)


def save_config(path: str | Path, cfg) -> None:
    """An OmegaConf config as YAML."""
    from omegaconf import OmegaConf

    with atomic(path) as tmp:
        OmegaConf.save(cfg, tmp)


def copy_file(source: str | Path, target: str | Path, metadata: bool = False, overwrite: bool = True,
              key: str | None = None) -> None:
    """``source``'s bytes (and with ``metadata`` its times and mode) at ``target``; ``overwrite``
    and ``key`` as for ``atomic``."""
    with atomic(target, overwrite, key) as tmp:
        (shutil.copy2 if metadata else shutil.copyfile)(source, tmp)


def _flush(path: Path) -> None:
    """The file's content on disk before it is renamed: after a power cut the new name never
    points at an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
