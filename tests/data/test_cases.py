"""data=cases: the split by case, statistics from training cases only, the length rules, one
window per case that reads its own rows only, and one-line refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from seqtrain.data.cases import CaseRows, CaseSpec, check_case_settings, read_cases, shape_cases, split_cases
from seqtrain.data.datamodule import SeqDataModule
from seqtrain.data.windows import TEST, TRAIN, VAL
from seqtrain.errors import SeqtrainError

CONF = OmegaConf.load("seqtrain/conf/data/parquet.yaml")


def case_table(n_cases: int = 60, classes=("a", "b", "c"), lengths=(5, 12), seed: int = 0) -> pd.DataFrame:
    """Cases whose channel c0 holds the class's index plus noise, c1 the row's position."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n_cases):
        n = int(rng.integers(lengths[0], lengths[1] + 1))
        k = i % len(classes)
        parts.append(pd.DataFrame({"case": f"k{i:03d}", "step": np.arange(n),
                                   "c0": (k + 0.1 * rng.standard_normal(n)).astype(np.float32),
                                   "c1": np.arange(n, dtype=np.float32), "label": classes[k]}))
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed)  # any row order


def settings_of(path, **data) -> OmegaConf:
    cases = OmegaConf.load("seqtrain/conf/data/cases.yaml")
    merged = OmegaConf.merge(CONF, {k: v for k, v in cases.items() if k != "defaults"}, data)
    merged.path = str(path)
    return merged


def write(tmp_path, frame: pd.DataFrame, name: str = "cases.parquet"):
    path = tmp_path / name
    frame.to_parquet(path, index=False)
    return path


def test_split_is_by_case_stratified_and_validation_comes_from_training_cases(tmp_path):
    frame = case_table(90)
    data = read_cases(settings_of(write(tmp_path, frame)), "classification", str(tmp_path / "cases.parquet"))
    names = np.asarray(data.series_names)
    by_split = {name: set(names[data.series[ends]]) for name, ends in data.ends.items()}
    assert sum(len(v) for v in by_split.values()) == 90  # every case in exactly one split
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"]
                or by_split["val"] & by_split["test"])
    labels = frame.groupby("case")["label"].first()
    for name in ("train", "val", "test"):  # stratified: every class in every split, near its share
        counts = labels[sorted(by_split[name])].value_counts()
        assert counts.max() - counts.min() <= 1, name
    assert len(by_split["test"]) == 27 and len(by_split["val"]) == 12  # per class: 0.3 of 30, 0.2 of 21
    # the split does not depend on the order of the file's rows, only on the seed
    again = read_cases(settings_of(write(tmp_path, frame.sample(frac=1.0, random_state=5), "b.parquet")),
                       "classification", str(tmp_path / "b.parquet"))
    names = np.asarray(again.series_names)
    assert {n: set(names[again.series[e]]) for n, e in again.ends.items()} == by_split


def test_the_tables_own_split_is_kept_and_validation_carved_from_its_training_cases(tmp_path):
    frame = case_table(60)
    test_cases = sorted(frame.case.unique())[::4]
    frame["split"] = np.where(frame.case.isin(test_cases), "test", "train")
    path = write(tmp_path, frame)
    data = read_cases(settings_of(path, split={"column": "split"}), "classification", str(path))
    names = np.asarray(data.series_names)
    assert sorted(names[data.series[data.ends["test"]]]) == test_cases
    assert not set(names[data.series[data.ends["val"]]]) & set(test_cases)
    assert "split" not in data.state.features  # never a channel


def test_statistics_are_fit_on_training_cases_only(tmp_path):
    frame = case_table(60)
    path = write(tmp_path, frame)
    data = read_cases(settings_of(path), "classification", str(path))
    names = np.asarray(data.series_names)
    held_out = set(names[data.series[np.concatenate([data.ends["val"], data.ends["test"]])]])
    changed = frame.copy()
    changed.loc[changed.case.isin(held_out), "c0"] *= 1000.0  # validation and test cases only
    path2 = write(tmp_path, changed, "changed.parquet")
    again = read_cases(settings_of(path2), "classification", str(path2))
    np.testing.assert_array_equal(again.state.scaler.mean, data.state.scaler.mean)
    np.testing.assert_array_equal(again.state.scaler.std, data.state.scaler.std)
    assert again.state.window.seq_length == data.state.window.seq_length  # fit on training cases
    train_rows = np.isin(data.series, data.series[data.ends["train"]])
    np.testing.assert_array_equal(again.inputs[train_rows], data.inputs[train_rows])


def test_each_case_is_one_window_of_its_own_rows_left_padded(tmp_path):
    frame = case_table(30, lengths=(3, 9))
    path = write(tmp_path, frame)
    data = read_cases(settings_of(path), "classification", str(path))
    module = SeqDataModule(data, batch_size=8)
    windows = module.whole_windows("test")
    length = data.state.window.seq_length
    batch = module.datasets["test"].block.batch(module.datasets["test"].ends)
    for i, code in enumerate(windows["code"]):
        rows = data.inputs[data.series == code]
        n = len(rows)
        assert batch["mask"][i].sum() == min(n, length)
        np.testing.assert_array_equal(windows["x"][i, length - n:].numpy(), rows[-length:])
        assert (windows["x"][i, :length - n] == 0).all()  # padding, never another case's rows
    assert data.state.window.horizon == 0 and data.state.window.pad_short


def test_length_rules(tmp_path):
    frame = case_table(30, lengths=(4, 10))
    path = write(tmp_path, frame)
    lengths = frame.groupby("case").size()
    truncated = read_cases(settings_of(path, length="truncate"), "classification", str(path))
    train_cases = np.asarray(truncated.series_names)[truncated.series[truncated.ends["train"]]]
    assert truncated.state.window.seq_length == lengths[train_cases].min()
    assert np.bincount(truncated.series).max() == truncated.state.window.seq_length
    # truncation keeps the first rows: c1 holds the row's position
    first_rows = truncated.inputs[:, 1] * truncated.state.scaler.std[1] + truncated.state.scaler.mean[1]
    n = truncated.state.window.seq_length
    assert np.allclose(first_rows[:n], np.arange(n), atol=1e-5)
    resampled = read_cases(settings_of(path, length="resample", seq_length=7), "classification", str(path))
    assert (np.bincount(resampled.series) == 7).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=6), st.integers(1, 9))
def test_resampling_keeps_each_cases_ends_and_straight_lines(lengths, length):
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    position = np.concatenate([np.arange(n) / max(n - 1, 1) for n in lengths])  # a straight line per case
    x = np.column_stack([position, 3 * position + 1]).astype(np.float32)
    series = np.repeat(np.arange(len(lengths)), lengths)
    rows = CaseRows(x, None, np.concatenate([np.arange(n) for n in lengths]), series,
                    [f"c{i}" for i in range(len(lengths))], np.arange(bounds[-1]))
    out, _ = shape_cases(rows, "resample", length)
    assert (np.bincount(out.series) == length).all()
    for i, n in enumerate(lengths):
        case = out.x[out.series == i]
        np.testing.assert_allclose(case[0], x[bounds[i]], atol=1e-6)  # the first row kept
        if n > 1 and length > 1:
            np.testing.assert_allclose(case[-1], x[bounds[i + 1] - 1], atol=1e-6)  # and the last
            np.testing.assert_allclose(case[:, 0], np.linspace(0, 1, length), atol=1e-5)  # a line stays one


def test_split_cases_keeps_a_training_case_of_every_class():
    labels = np.asarray(["a"] * 10 + ["b"] * 2 + ["c"])
    split = split_cases(labels, CaseSpec(test=0.5, val=0.5), None)
    for label in "abc":
        assert (split[labels == label] == TRAIN).any()
    assert (split == TEST).sum() == 5 + 1 and (split == VAL).any()


@pytest.mark.parametrize("change, message", [
    (lambda f: f.assign(label=np.where((f.case == "k000") & (f.step == 1), "b", f.label)),
     "case 'k000' has two labels"),
    (lambda f: f.assign(split=np.where(f.step == 0, "test", "train")), "is in two splits"),
    (lambda f: f.assign(split="holdout"), "holds 'holdout'"),
    (lambda f: pd.concat([f, f[f.case == "k001"].head(1)]), "duplicate timestamps in series 'k001'"),
])
def test_bad_case_tables_get_one_line(tmp_path, change, message):
    frame = change(case_table(30).assign(split="train"))
    path = write(tmp_path, frame)
    column = {"column": "split"} if "split" in message or "holdout" in message else {}
    with pytest.raises(SeqtrainError, match=message) as caught:
        read_cases(settings_of(path, split=column), "classification", str(path))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("key, value, message", [
    ("horizon", 1, "data.horizon"), ("length", "stretch", "data.length"),
    ("seq_length", 0, "data.seq_length"), ("epoch_cases", 0, "data.epoch_cases"),
    ("streaming", "true", "data.streaming"),
])
def test_settings_that_mean_nothing_for_a_case_are_refused(tmp_path, key, value, message):
    with pytest.raises(SeqtrainError, match=message):
        check_case_settings(settings_of(tmp_path / "x.parquet", **{key: value}), "classification", "single")
    with pytest.raises(SeqtrainError, match="task=classification"):
        check_case_settings(settings_of(tmp_path / "x.parquet"), "regression", "single")
    with pytest.raises(SeqtrainError, match="eval=default"):
        check_case_settings(settings_of(tmp_path / "x.parquet"), "classification", "walk_forward")


def test_an_epoch_goes_through_epoch_cases_training_cases(tmp_path):
    path = write(tmp_path, case_table(60))
    data = read_cases(settings_of(path, epoch_cases=200), "classification", str(path))
    n_train = len(data.ends["train"])
    module = SeqDataModule(data, batch_size=8)
    assert len(module.datasets["train"]) == n_train * round(200 / n_train)
    assert len(module.whole_windows("train")["code"]) == n_train  # each case once for the baselines
    assert len(pa.parquet.read_table(path)) > 0


@pytest.mark.parametrize("n_cases, empty", [(2, "test"), (4, "val")])
def test_a_split_left_without_cases_is_one_line(tmp_path, n_cases, empty):
    # two classes: one case each leaves no test case, two each no validation case (every class
    # keeps a training case); as an empty split of windows, this is refused, not trained on
    path = write(tmp_path, case_table(n_cases, classes=("a", "b")))
    with pytest.raises(SeqtrainError, match=f"data.split: no {empty} case") as caught:
        read_cases(settings_of(path), "classification", str(path))
    assert "\n" not in str(caught.value)


def test_held_out_cases_that_copy_a_training_case_are_named(tmp_path, caplog):
    frame = case_table(30)
    copies = frame.assign(case="copy_" + frame.case)  # the same cases again under other ids
    path = write(tmp_path, pd.concat([frame, copies]))
    with caplog.at_level("WARNING", logger="seqtrain.data.cases"):
        data = read_cases(settings_of(path), "classification", str(path))
    names = np.asarray(data.series_names)
    train = set(names[data.series[data.ends["train"]]])
    held = [n for s in ("val", "test") for n in names[data.series[data.ends[s]]]]
    twins = sum((n.removeprefix("copy_") if n.startswith("copy_") else "copy_" + n) in train for n in held)
    assert twins > 0 and f"{twins} validation or test case(s) repeat a training case" in caplog.text
    caplog.clear()
    path = write(tmp_path, frame, "plain.parquet")
    with caplog.at_level("WARNING", logger="seqtrain.data.cases"):
        read_cases(settings_of(path), "classification", str(path))
    assert "repeat a training case" not in caplog.text


def test_a_case_the_nan_policy_empties_is_named(tmp_path, caplog):
    frame = case_table(30)
    frame.loc[frame.case == "k004", "c0"] = np.nan  # every row of one case
    path = write(tmp_path, frame)
    with caplog.at_level("WARNING", logger="seqtrain.data.cases"):
        data = read_cases(settings_of(path, nan_policy="drop"), "classification", str(path))
    assert "k004" not in set(np.asarray(data.series_names)[data.series])
    assert "1 case(s) have no row left and are left out (first: 'k004')" in caplog.text
