"""Reading Parquet with pyarrow: one file or a directory of files (hive partitions allowed),
schema first (cheap checks), then only the needed columns, whole or one row group at a time."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from seqtrain.data.columns import time_values, time_zone
from seqtrain.data.splits import in_period
from seqtrain.errors import SeqtrainError, first_line


def open_dataset(path: str | Path) -> ds.Dataset:
    """The table at ``path`` (a file, or a directory of ``*.parquet`` files with optional
    ``key=value`` hive folders), or one clear error."""
    path = Path(path)
    if not path.exists():
        raise SeqtrainError(f"data.path: file not found: {path} (point data.path at a Parquet file)")
    try:
        if path.is_dir():
            dataset = ds.dataset(str(path), format="parquet", partitioning="hive",
                                 exclude_invalid_files=False, ignore_prefixes=[".", "_"])
            if not dataset.files:
                raise SeqtrainError(f"data.path: directory {path} holds no Parquet files")
            return dataset
        dataset = ds.dataset(str(path), format="parquet")
        dataset.schema  # noqa: B018  (reads the footer now, so a bad file fails here)
        return dataset
    except (pa.ArrowInvalid, OSError) as exc:
        raise SeqtrainError(
            f"data.path: {path} is not a readable Parquet file ({first_line(exc)})"
        ) from None


def read_schema(path: str | Path) -> pa.Schema:
    return open_dataset(path).schema


def read_columns(path: str | Path, columns: list[str], dataset: ds.Dataset | None = None) -> pa.Table:
    """Only ``columns`` of the table (column projection: the rest is never decoded), in the
    dataset's row order (files by path, then row groups), the same on every call; ``dataset``:
    the table at ``path`` already opened."""
    try:
        return (dataset or open_dataset(path)).to_table(columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SeqtrainError(f"data.path: cannot read {path}: {first_line(exc)}") from None


def row_groups(dataset: ds.Dataset) -> list[ds.ParquetFileFragment]:
    """Every row group of every file as its own fragment, in stream order (files by path)."""
    fragments = sorted(dataset.get_fragments(), key=lambda f: f.path)
    return [row_group for fragment in fragments for row_group in fragment.split_by_row_group()]


def row_group_parts(dataset: ds.Dataset, rows: int) -> list[tuple[ds.ParquetFileFragment, int]]:
    """The table as runs of consecutive row groups of one file, about ``rows`` rows each (a
    larger row group alone), in ``read_columns``' row order; each with its row count. Read one
    at a time (``read_row_group``), they bound what is decoded at once: a whole-table read holds
    the scanner's read-ahead of many row groups besides the table."""
    parts = []
    for fragment in sorted(dataset.get_fragments(), key=lambda f: f.path):
        run, run_rows = [], 0
        try:
            row_groups = fragment.row_groups
        except (pa.ArrowInvalid, OSError) as exc:
            raise SeqtrainError(f"data.path: cannot read {fragment.path}: {first_line(exc)}") from None
        for row_group in (r for r in row_groups if r.num_rows):
            if run and run_rows + row_group.num_rows > rows:
                parts.append((fragment.subset(row_group_ids=run), run_rows))
                run, run_rows = [], 0
            run.append(row_group.id)
            run_rows += row_group.num_rows
        if run:
            parts.append((fragment.subset(row_group_ids=run), run_rows))
    return parts


def read_row_group(row_group: ds.ParquetFileFragment, schema: pa.Schema, columns: list[str]) -> pa.Table:
    """One row group (or a run of them, ``row_group_parts``), only ``columns`` (hive partition
    columns included)."""
    try:
        return row_group.to_table(schema=schema, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SeqtrainError(f"data.path: cannot read {row_group.path}: {first_line(exc)}") from None


def read_in_period(row_group: ds.ParquetFileFragment, schema: pa.Schema, columns: list[str],
                   time_col: str, period) -> pa.Table:
    """One row group's ``columns``, only its rows within a walk-forward fold's period
    (``data.split`` train_start/test_end) when one is set: the passes and every epoch see the
    same rows as the in-memory path after ``keep_period``."""
    table = read_row_group(row_group, schema, columns)
    if period is None:
        return table
    keep = in_period(period, time_values(table.column(time_col), time_col), time_zone(schema, time_col))
    return table if keep.all() else table.filter(pa.array(keep))
