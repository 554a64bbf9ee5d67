"""The built-in tables: deterministic, look-ahead free, shaped as their docstrings say."""

import numpy as np
import pandas as pd
import pytest

from seqtrain.data.synthetic import (
    CASE_SHAPES,
    GENERATORS,
    make_bars_table,
    make_cases_table,
    make_load_table,
    write_parquet,
)
from seqtrain.errors import SeqtrainError


@pytest.mark.parametrize("name", sorted(set(GENERATORS) - {"cases"}))
def test_every_series_table_is_the_same_for_the_same_seed_and_differs_for_another(name, tmp_path):
    make = GENERATORS[name]
    pd.testing.assert_frame_equal(make(n_series=2, length=500, seed=3), make(n_series=2, length=500, seed=3))
    assert not make(n_series=2, length=500, seed=3).equals(make(n_series=2, length=500, seed=4))
    written = pd.read_parquet(write_parquet(tmp_path / "t.parquet", name=name, n_series=2, length=300))
    assert len(written) == 600 and written["symbol"].nunique() == 2
    assert (written.groupby("symbol")["time"].diff().dropna() == pd.Timedelta(hours=1)).all()


def test_an_unknown_table_or_setting_is_one_line(tmp_path):
    with pytest.raises(SeqtrainError,
                       match="data.generator.name: unknown 'stocks'; choose demo, load, bars, cases"):
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


def test_cases_are_whole_labelled_sequences_of_lengths_in_range_and_balanced_classes(tmp_path):
    cases = make_cases_table(n_cases=90, n_classes=3, channels=2, min_length=20, max_length=40, seed=5)
    pd.testing.assert_frame_equal(cases, make_cases_table(n_cases=90, n_classes=3, channels=2,
                                                          min_length=20, max_length=40, seed=5))
    assert not cases.equals(make_cases_table(n_cases=90, n_classes=3, channels=2, min_length=20,
                                             max_length=40, seed=6))
    assert list(cases.columns) == ["case", "step", "c0", "c1", "label"]
    assert pd.api.types.is_string_dtype(cases["case"]) and pd.api.types.is_string_dtype(cases["label"])
    assert cases["step"].dtype == np.int64 and (cases[["c0", "c1"]].dtypes == np.float32).all()
    by_case = cases.groupby("case", sort=False)
    lengths = by_case.size()
    assert len(lengths) == 90 and lengths.between(20, 40).all() and lengths.nunique() > 5
    assert (by_case["step"].diff().dropna() == 1).all() and (by_case["step"].first() == 0).all()
    assert (by_case["label"].nunique() == 1).all()
    assert by_case["label"].first().value_counts().to_dict() == {shape: 30 for shape in CASE_SHAPES[:3]}
    written = pd.read_parquet(write_parquet(tmp_path / "cases.parquet", name="cases", n_cases=12, seed=1))
    pd.testing.assert_frame_equal(written, make_cases_table(n_cases=12, seed=1), check_dtype=False)


def test_the_class_of_a_case_is_in_its_first_channels_shape():
    """c0 carries the event: a bump's mass is positive, the oscillations' is not; the noise
    channel carries nothing (its mean is the same for every class)."""
    cases = make_cases_table(n_cases=200, n_classes=4, seed=0)
    means = cases.groupby("case").agg(label=("label", "first"), c0=("c0", "mean"), c2=("c2", "mean"))
    by_class = means.groupby("label")[["c0", "c2"]].mean()
    assert by_class.loc["bump", "c0"] > 0.1 + by_class.drop("bump")["c0"].max()
    assert by_class["c2"].abs().max() < 0.05


def test_a_cases_setting_out_of_range_is_one_line(tmp_path):
    with pytest.raises(SeqtrainError, match="data.generator.n_classes: 9; between 2 and 5"):
        write_parquet(tmp_path / "t.parquet", name="cases", n_classes=9)
    with pytest.raises(SeqtrainError, match="data.generator.min_length: 50 .max_length 40."):
        write_parquet(tmp_path / "t.parquet", name="cases", min_length=50, max_length=40)
