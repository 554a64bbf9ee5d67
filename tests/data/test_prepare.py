"""Preparing a table reads the key columns, then the feature columns a few at a time: every
row's values must stay together across reads, files, row groups, sorting and dropped rows."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_module

from seqtrain.data import table_rows as prepare_module
from seqtrain.data.memory import read_table
from seqtrain.errors import SeqtrainError

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


@pytest.mark.parametrize("kind", ["string", "int", "categorical"])
def test_series_codes_read_in_parts_are_the_whole_tables(kind):
    """Each part's rows coded by first appearance, renumbered at the end, give the codes and
    names of decoding the whole series column at once (sorted names; a categorical column by
    name, not by its categories' order, and without categories no row holds)."""
    from seqtrain.data.reader_rules import PartSeriesCodes, table_series_codes

    rng = np.random.default_rng(0)
    values = rng.choice([17, 3, 250, 4, 99], 1000)
    if kind == "int":
        column = pa.array(values)
    else:
        names = [f"S{v}" for v in values]
        column = pa.array(names) if kind == "string" else pa.DictionaryArray.from_arrays(
            pa.array([["S250", "S17", "S3", "S4", "S99", "unused"].index(n) for n in names]),
            pa.array(["S250", "S17", "S3", "S4", "S99", "unused"]))
    table = pa.table({"symbol": column})
    codes = PartSeriesCodes("symbol")
    cuts = [0, 1, 2, 300, 301, 777, 1000]
    parts = np.concatenate([codes.of(table.slice(a, b - a))
                            for a, b in zip(cuts[:-1], cuts[1:], strict=True)])
    got, names = codes.in_name_order(parts)
    want, want_names = table_series_codes(table, "symbol")
    assert np.array_equal(got, want) and got.dtype == want.dtype and names == want_names


@pytest.mark.parametrize("column", ["time", "symbol"])
def test_a_key_column_with_missing_values_is_counted_over_the_whole_table(tmp_path, column):
    """Read part by part, a key column's missing values are still counted over every part."""
    frame = pd.DataFrame({"time": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(100), "h"),
                          "symbol": "A", "f0": np.ones(100, np.float32), "close": np.arange(100.0)})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    missing = np.zeros(100, bool)
    missing[[3, 10, 60, 61, 99]] = True
    table = table.set_column(table.schema.get_field_index(column), column,
                             pa.array(table.column(column).to_pylist(), mask=missing))
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=25)
    with pytest.raises(SeqtrainError, match=f"{column!r} has 5 missing values"):
        prepared(tmp_path / "t.parquet", "data.features=[f0]")
