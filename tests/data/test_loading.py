"""``data.streaming``: read in one place, and ``auto``'s rule (stream what the in-memory path's
estimate puts over ``data.memory_budget``) on numbers worked out by hand."""

from __future__ import annotations

import pytest

from seqtrain.data.loading import fits_in_memory, streaming_mode
from seqtrain.errors import SeqtrainError


def test_streaming_is_auto_true_or_false_in_any_case():
    # a YAML true/false reaches the config as a boolean
    assert [streaming_mode(v) for v in ("auto", "TRUE", "False", True, False)] == [
        "auto", "true", "false", "true", "false"]
    with pytest.raises(SeqtrainError, match=r"^data.streaming: 'maybe'; choose auto, true or false$"):
        streaming_mode("maybe")


def test_auto_keeps_in_memory_up_to_the_budget_and_streams_beyond():
    # per row: 3 float32 inputs + label (16 bytes), time, series, row number (24) and 3 split indices (24)
    assert fits_in_memory(10, 3, 640) and fits_in_memory(10, 3, "640B")
    assert not fits_in_memory(11, 3, 640) and not fits_in_memory(10, 4, 640)
    assert fits_in_memory(16384, 3, "1MiB") and not fits_in_memory(16385, 3, "1MiB")
