"""The one chunk assembler of the streamed windows and of predict: however a table is cut into
chunks, every row is new once, numbered by its place in its series, and finds the rows of its
series before it (up to ``keep``) just before it in its chunk."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrain.data.chunks import ChunkJoiner
from seqtrain.data.rows import RowBlock


def joined_chunks(series: np.ndarray, cuts: list[int], keep: int):
    """Each chunk's joined block (row ids, series, row numbers) and its new rows."""
    joiner = ChunkJoiner(keep)
    edges = [0, *sorted(set(cuts)), len(series)]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        new = {"id": np.arange(a, b), "series": series[a:b], "row_number": np.full(b - a, -1, np.int64)}
        block, is_new = joiner.join(new)
        joiner.number(block, is_new)
        yield block, is_new
        joiner.carry(block)


def test_a_chunk_joins_after_the_carried_rows_of_each_series():
    series = np.array([1, 0, 1, 1, 0, 1, 0])  # series 1 appears first; codes need not be in order
    blocks = list(joined_chunks(series, [4], keep=2))
    block, is_new = blocks[1]  # rows 4.. after the last two rows of each series in rows 0..3
    assert block["id"].tolist() == [1, 4, 6, 2, 3, 5]
    assert is_new.tolist() == [False, True, True, False, False, True]
    assert block["row_number"].tolist() == [0, 1, 2, 1, 2, 3]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.lists(st.integers(1, 39), max_size=6),
       st.integers(0, 5))
def test_any_cut_gives_each_row_once_with_its_history_before_it(codes, cuts, keep):
    series = np.asarray(codes, np.int64)
    cuts = [c for c in cuts if c < len(series)]
    position = np.zeros(len(series), np.int64)  # each row's place in its series, in file order
    for code in np.unique(series):
        position[series == code] = np.arange(int((series == code).sum()))
    seen = []
    for block, is_new in joined_chunks(series, cuts, keep):
        assert np.all(np.diff(block["series"]) >= 0)  # grouped by series
        ids = block["id"]
        assert np.array_equal(block["row_number"], position[ids])
        for i in np.flatnonzero(is_new):
            before = min(keep, int(position[ids[i]]))  # the rows of its series a window reads
            same = np.flatnonzero(series[:ids[i]] == series[ids[i]])  # its series' earlier rows
            assert i >= before and ids[i - before:i].tolist() == same[len(same) - before:].tolist()
        seen.extend(ids[is_new].tolist())
    assert sorted(seen) == list(range(len(series)))


def test_a_padded_chunk_shorter_than_a_window_gives_its_windows():
    """Predict's chunk (here 3 rows of one series) may be shorter than seq_length (5): with
    pad_short each window is its real rows after zeros, masked."""
    inputs = torch.arange(1.0, 7.0).reshape(3, 2)
    rows = RowBlock(inputs, torch.zeros(3), torch.arange(3), torch.zeros(3, dtype=torch.int64),
                    torch.arange(3), seq_length=5, horizon=1, output_steps=1, classification=False,
                    pad_short=True)
    batch = rows.batch(torch.tensor([0, 2]), beyond_end=True)
    assert batch["mask"].tolist() == [[False] * 4 + [True], [False] * 2 + [True] * 3]
    assert batch["x"][1].tolist() == [[0, 0], [0, 0], [1, 2], [3, 4], [5, 6]]
    assert batch["label_known"].tolist() == [[True], [False]]  # row 3 is beyond the chunk
