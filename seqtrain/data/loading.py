"""Choose between the in-memory and the streaming data path (``data.streaming``)."""

from __future__ import annotations

import logging
import re

from seqtrain.data import source, validate
from seqtrain.data.cases import read_cases
from seqtrain.data.memory import TableData, read_table
from seqtrain.data.stream_plan import StreamData, plan_stream
from seqtrain.errors import SeqtrainError

log = logging.getLogger(__name__)

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value) -> int:
    """``4GB``, ``512MiB`` or a number of bytes."""
    if isinstance(value, (int, float)):
        return int(value)
    match = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in UNITS:
        raise SeqtrainError(f"data.memory_budget: cannot read {value!r}; write e.g. 4GB or 512MiB")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def in_memory_bytes(n_rows: int, n_inputs: int) -> int:
    """What the in-memory path holds per row: float32 inputs and label, time, series, row number,
    and the index arrays of the split (a conservative estimate). Training counts as inputs the
    features, the target and every calendar column (which of them vary is known only after the
    fit), ``seqtrain predict`` the run's inputs and the target: two counts, kept apart because
    one count for both would move some tables from one path to the other."""
    return n_rows * (4 * n_inputs + 4 + 8 + 8 + 8 + 3 * 8)


def streaming_mode(value) -> str:
    """``data.streaming`` as ``auto``, ``true`` or ``false``; one line for anything else."""
    mode = str(value).lower()
    if mode not in ("auto", "true", "false"):
        raise SeqtrainError(f"data.streaming: {value!r}; choose auto, true or false")
    return mode


def fits_in_memory(rows: int, n_inputs: int, memory_budget) -> bool:
    """``streaming: auto``'s rule: whether the in-memory path's estimate for ``rows`` rows of
    ``n_inputs`` columns stays within ``data.memory_budget`` (else the table is streamed)."""
    return in_memory_bytes(rows, n_inputs) <= parse_bytes(memory_budget)


def load_data(cfg, task: str, path: str, series_embedding: bool = False) -> TableData | StreamData:
    """``streaming: auto`` keeps the table in memory when its needed columns fit
    ``data.memory_budget``, and streams it row group by row group otherwise.
    ``series_embedding``: the series id is an input (``model.series_embedding``)."""
    if cfg.get("kind") == "cases":  # whole cases: small tables, always in memory
        if series_embedding or cfg.get("static"):
            raise SeqtrainError("data=cases: each case is its own series; model.series_embedding and "
                                "data.static describe series of a long table (set them to 0 and [])")
        return read_cases(cfg, task, path)
    mode = streaming_mode(cfg.streaming)
    dataset = source.open_dataset(path)
    skipped = validate.unused_columns(dataset.schema, cfg)
    if skipped:
        log.info("data.features=null uses every numeric column; not used, not numeric: %s "
                 "(encode them as numbers and list them in data.features to use them)", ", ".join(skipped))
    if mode == "auto":
        _, _, _, features = validate.resolve_columns(dataset.schema, cfg, path)
        rows, n_inputs = dataset.count_rows(), len(features) + 1 + 10 * bool(cfg.time_features)
        mode = "false" if fits_in_memory(rows, n_inputs, cfg.memory_budget) else "true"
        if mode == "true":
            log.info("streaming %s: about %s in memory would exceed data.memory_budget (%s)",
                     path, _size(in_memory_bytes(rows, n_inputs)), _size(parse_bytes(cfg.memory_budget)))
    if mode == "true":
        if cfg.get("static"):
            raise SeqtrainError("data.static needs the whole table in memory (each column is checked "
                                "constant within every series); set data.streaming=false")
        return plan_stream(cfg, task, path, series_embedding)
    return read_table(cfg, task, path, series_embedding)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
