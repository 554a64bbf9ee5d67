"""The built-in tables: deterministic, look-ahead free, shaped as their docstrings say."""

import numpy as np
import pandas as pd
import pytest

from seqtrain.data.synthetic import GENERATORS, make_bars_table, make_load_table, write_parquet
from seqtrain.errors import SeqtrainError


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_every_table_is_the_same_for_the_same_seed_and_differs_for_another(name, tmp_path):
    make = GENERATORS[name]
    pd.testing.assert_frame_equal(make(n_series=2, length=500, seed=3), make(n_series=2, length=500, seed=3))
    assert not make(n_series=2, length=500, seed=3).equals(make(n_series=2, length=500, seed=4))
    written = pd.read_parquet(write_parquet(tmp_path / "t.parquet", name=name, n_series=2, length=300))
    assert len(written) == 600 and written["symbol"].nunique() == 2
    assert (written.groupby("symbol")["time"].diff().dropna() == pd.Timedelta(hours=1)).all()


def test_an_unknown_table_or_setting_is_one_line(tmp_path):
    with pytest.raises(SeqtrainError, match="data.generator.name: unknown 'stocks'; choose demo, load, bars"):
        write_parquet(tmp_path / "t.parquet", name="stocks")
    with pytest.raises(SeqtrainError, match="data.generator.volatility: not a setting of the bars table"):
        write_parquet(tmp_path / "t.parquet", name="bars", volatility=2)
    (tmp_path / "a_file").write_text("")  # a folder that cannot be made
    with pytest.raises(SeqtrainError, match="data.path: cannot write into .*a_file"):
        write_parquet(tmp_path / "a_file" / "t.parquet")


def test_bars_are_consistent_ohlcv_and_open_at_the_previous_close():
    bars = make_bars_table(n_series=2, length=1000)
    assert list(bars.columns) == ["time", "symbol", "open", "high", "low", "close", "volume"]
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["volume"] > 0).all()
    for _, series in bars.groupby("symbol"):
        np.testing.assert_allclose(series["open"].to_numpy()[1:], series["close"].to_numpy()[:-1])


def test_load_has_its_daily_profile_quieter_weekends_and_levels_beyond_the_first_weeks():
    load = make_load_table(n_series=3, length=24 * 7 * 16)
    for _, series in load.groupby("symbol"):
        y, time = series["y"].to_numpy(), series["time"]
        weekend = time.dt.weekday.to_numpy() >= 5
        assert y[weekend].mean() < 0.9 * y[~weekend].mean()
        by_hour = series.groupby(time.dt.hour)["y"].mean()
        assert by_hour.max() > 1.3 * by_hour.min()
        direction = (np.diff(y) > 0).astype(np.int8)  # the move into each row, never the next one
        np.testing.assert_array_equal(series["direction"].to_numpy()[1:], direction)
    first, last = load.groupby("symbol")["y"].agg(lambda v: v.iloc[: len(v) // 2].max()), \
        load.groupby("symbol")["y"].agg(lambda v: v.iloc[-24 * 14:].max())
    assert (last > first).any()  # some series grew past anything its first half saw
