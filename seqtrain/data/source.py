"""Reading Parquet with pyarrow: schema first (cheap checks), then only the needed columns."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from seqtrain.errors import SeqtrainError


def read_schema(path: str | Path) -> pa.Schema:
    """The table's schema, or one clear error when the path is missing or not Parquet."""
    path = Path(path)
    if not path.exists():
        raise SeqtrainError(f"data.path: file not found: {path} (point data.path at a Parquet file)")
    if path.is_dir():
        raise SeqtrainError(f"data.path: {path} is a directory; point data.path at a Parquet file")
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SeqtrainError(
            f"data.path: {path} is not a readable Parquet file ({_first_line(exc)})"
        ) from None


def read_columns(path: str | Path, columns: list[str]) -> pa.Table:
    """Only ``columns`` of the table (column projection: the rest is never decoded)."""
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SeqtrainError(f"data.path: cannot read {path}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
