"""Preparing a table reads the key columns, then the feature columns a few at a time: every
row's values must stay together across reads, files, row groups, sorting and dropped rows."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_module

from seqtrain.data import memory as prepare_module
from seqtrain.data.memory import read_table

SYMBOLS = ["A", "B", "C"]


def row_code(symbol: int, hour: np.ndarray) -> np.ndarray:
    """A value no other row has: which series, which hour."""
    return symbol * 10_000.0 + hour


def write_partitioned(root, shuffled_files: bool) -> None:
    """Three series as hive partitions ``symbol=X``, each in three files of small row groups;
    with ``shuffled_files`` the files' names run against time (only ``data.sort`` accepts that)."""
    rng = np.random.default_rng(0)
    for s, symbol in enumerate(SYMBOLS):
        hours = np.arange(400 + 50 * s)
        parts = np.array_split(hours, 3)
        folder = root / f"symbol={symbol}"
        folder.mkdir(parents=True)
        for k, part in enumerate(parts):
            name = f"part-{(2 - k) if shuffled_files else k}.parquet"
            code = row_code(s, part)
            frame = pd.DataFrame({
                "time": pd.Timestamp("2024-01-01") + pd.to_timedelta(part, "h"),
                "f0": code.astype(np.float32), "f1": (-code).astype(np.float32),
                "noise": rng.normal(size=len(part)).astype(np.float32),
                "close": code + 0.5,
            })
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / name,
                           row_group_size=37)


def prepared(root, *overrides):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        cfg = compose("config", overrides=["data=parquet", f"data.path={root}", "data.target=close",
                                           "data.group_col=symbol", "data.features=[f0,f1,noise]",
                                           "data.scaler=none", "data.seq_length=8", *overrides])
    return read_table(cfg.data, "regression", str(root))


@pytest.fixture(params=["one read", "a read per column"])
def reads(request, monkeypatch):
    if request.param == "a read per column":
        monkeypatch.setattr(prepare_module, "READ_BYTES", 1)


@pytest.mark.parametrize("shuffled_files,overrides", [(False, []), (True, ["data.sort=true"])])
def test_each_row_keeps_its_own_values_across_files_and_row_groups(tmp_path, reads, shuffled_files,
                                                                   overrides):
    write_partitioned(tmp_path / "table", shuffled_files)
    data = prepared(tmp_path / "table", *overrides)
    hours = (data.times - np.datetime64("2024-01-01")) // np.timedelta64(1, "h")
    code = row_code(data.series, hours.astype(np.float64))
    assert np.array_equal(data.inputs[:, 0], code.astype(np.float32))
    assert np.array_equal(data.inputs[:, 1], (-code).astype(np.float32))
    assert data.state.inputs == ["f0", "f1", "noise", "close"]  # the target's history, appended
    assert np.array_equal(data.inputs[:, 3], (code + 0.5).astype(np.float32))
    assert all(np.all(np.diff(hours[data.series == s]) == 1) for s in range(len(SYMBOLS)))


def test_rows_dropped_for_missing_values_take_all_their_columns_with_them(tmp_path, reads):
    write_partitioned(tmp_path / "table", shuffled_files=False)
    path = tmp_path / "table" / "symbol=B" / "part-1.parquet"
    frame = pq.read_table(path).to_pandas()
    frame.loc[[3, 10], "noise"] = np.nan
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=37)
    data = prepared(tmp_path / "table", "data.nan_policy=drop")
    hours = (data.times - np.datetime64("2024-01-01")) // np.timedelta64(1, "h")
    code = row_code(data.series, hours.astype(np.float64))
    assert len(data.times) == 400 + 450 + 500 - 2
    assert np.array_equal(data.inputs[:, 0], code.astype(np.float32))
    assert np.array_equal(data.inputs[:, 3], (code + 0.5).astype(np.float32))
    assert np.isfinite(data.inputs).all()
