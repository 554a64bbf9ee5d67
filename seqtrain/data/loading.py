"""Choose between the in-memory and the streaming data path (``data.streaming``)."""

from __future__ import annotations

import logging

from seqtrain.data import source, validate
from seqtrain.data.memory import TableData, read_table
from seqtrain.data.streaming import StreamData, in_memory_bytes, parse_bytes, plan_stream
from seqtrain.errors import SeqtrainError

log = logging.getLogger(__name__)


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


def load_data(cfg, task: str, path: str) -> TableData | StreamData:
    """``streaming: auto`` keeps the table in memory when its needed columns fit
    ``data.memory_budget``, and streams it row group by row group otherwise."""
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
        return plan_stream(cfg, task, path)
    return read_table(cfg, task, path)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
