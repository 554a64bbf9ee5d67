"""The streaming path produces exactly the in-memory windows, once each across workers and ranks,
with the same look-ahead guarantees."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_module
from torch.utils.data import DataLoader

from seqtrain.data.datamodule import SeqDataModule, batch_as_is
from seqtrain.data.memory import read_table
from seqtrain.data.stream_plan import plan_stream
from seqtrain.data.stream_windows import StreamingWindows, shard_ranges
from seqtrain.errors import SeqtrainError
from tests.helpers import make_table

SETTINGS = ["data.seq_length=10", "data.horizon=2", "data.output_steps=2", "data.stride=3",
            "data.embargo=2"]


def data_cfg(path, *overrides):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        return compose("config", overrides=["data=parquet", f"data.path={path}", "data.target=close",
                                            "data.group_col=symbol", *overrides]).data


def unequal_series(seed=0) -> pd.DataFrame:
    """Five series of unequal lengths starting at different times, interleaved by time."""
    frames = [make_table(n, seed=seed + i).assign(symbol=f"S{i}", time=lambda f, i=i: f["time"]
                                                  + pd.Timedelta(days=7 * i))
              for i, n in enumerate([260, 180, 300, 40, 220])]
    return pd.concat(frames).sort_values(["time", "symbol"], kind="stable", ignore_index=True)


def write(frame, path, row_group_size=97):
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)
    return path


def collect(batches) -> dict:
    batches = list(batches)
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]} if batches else {}


def in_memory(cfg, task, path, season=0):
    data = read_table(cfg, task, str(path))
    module = SeqDataModule(data, 64, season=season)
    module.datasets["train"].with_eval_fields = True  # to compare windows one by one
    return data, {s: d.__getitems__(list(range(len(d)))) for s, d in module.datasets.items()}


def streamed(cfg, task, path, **kwargs):
    data = plan_stream(cfg, task, str(path))
    return data, {s: collect(StreamingWindows(data, s, 64, shuffle=s == "train", with_eval_fields=True,
                                              **kwargs))
                  for s in ("train", "val", "test")}


def assert_same_windows(a: dict, b: dict):
    keys_a = {tuple(w): i for i, w in enumerate(a["window"].tolist())}
    keys_b = {tuple(w): i for i, w in enumerate(b["window"].tolist())}
    assert len(keys_b) == len(b["window"]), "a window came twice"
    assert keys_a.keys() == keys_b.keys()
    order = [keys_b[w] for w in keys_a]
    for key in a:
        torch.testing.assert_close(b[key][order], a[key], rtol=1e-5, atol=1e-5, equal_nan=True, msg=key)


@pytest.mark.parametrize("layout", ["interleaved", "by_series", "hive", "one_row_group_per_row"])
@pytest.mark.parametrize("task", ["regression", "classification", "direction", "log_return"])
def test_streaming_gives_the_in_memory_windows_and_labels(tmp_path, layout, task):
    frame = unequal_series()
    overrides = [*SETTINGS, "data.known_future=[rsi]", "data.time_features=true"]
    if task == "classification":
        overrides = [*overrides, "data.target=up", "data.horizon=0", "data.output_steps=1"]
    elif task == "direction":  # built from close's moves, carried across row groups
        overrides = [*overrides, "data.label=direction", "data.dead_zone=q0.33", "data.output_steps=1"]
        task = "classification"
    elif task == "log_return":
        overrides = [*overrides, "data.label=log_return"]
        task = "regression"
    if layout == "hive":
        path = tmp_path / "table"
        for symbol, part in frame.groupby("symbol"):
            (path / f"symbol={symbol}").mkdir(parents=True)
            write(part.drop(columns="symbol"), path / f"symbol={symbol}" / "part-0.parquet", 50)
    else:
        if layout == "by_series":
            frame = frame.sort_values(["symbol", "time"], kind="stable")
        size = 1 if layout == "one_row_group_per_row" else 97
        path = write(frame, tmp_path / "t.parquet", size)
    cfg = data_cfg(path, *overrides)
    memory, expected = in_memory(cfg, task, path)
    stream, got = streamed(cfg, task, path)
    streamed_state, memory_state = stream.state.to_dict(), memory.state.to_dict()
    assert streamed_state["windows"] == memory_state["windows"]
    np.testing.assert_allclose(streamed_state["scaler"]["mean"], memory_state["scaler"]["mean"], rtol=1e-9)
    np.testing.assert_allclose(streamed_state["scaler"]["std"], memory_state["scaler"]["std"], rtol=1e-9)
    assert stream.series_names == memory.series_names
    for key in ("classes", "class_counts", "class_weights", "series_names", "inputs", "known_future",
                "class_counts_by_split"):
        assert streamed_state.get(key) == memory_state.get(key), key
    label, expected_label = streamed_state["label"], memory_state["label"]
    assert label["kind"] == expected_label["kind"]
    assert label["dead_zone"] == pytest.approx(expected_label["dead_zone"], rel=1e-12)
    if task == "regression":
        scaler, expected_scaler = streamed_state["target_scaler"], memory_state["target_scaler"]
        np.testing.assert_allclose(scaler["mean"], expected_scaler["mean"], rtol=1e-9)
    for split in ("train", "val", "test"):
        assert_same_windows(expected[split], got[split])


def test_a_categorical_series_column_names_only_the_series_its_rows_hold(tmp_path):
    """A pandas categorical column's dictionary may list a category no row holds: it is no
    series to the streamed reader (as in memory) nor a new series to predict; and both readers
    number the series by name, whatever the order of the categories."""
    from seqtrain.data.chunks import TableChunks

    frame = unequal_series(seed=3)
    frame["symbol"] = pd.Categorical(frame["symbol"], categories=["S3", "AAA", "S1", "S0", "S4", "S2"])
    path = write(frame, tmp_path / "t.parquet", 97)
    cfg = data_cfg(path, *SETTINGS)
    memory, expected = in_memory(cfg, "regression", path)
    stream, got = streamed(cfg, "regression", path)
    assert stream.series_names == memory.series_names == ["S0", "S1", "S2", "S3", "S4"]
    for split in ("train", "val", "test"):
        assert_same_windows(expected[split], got[split])
    chunks = TableChunks(memory.state, allow_new_series=False, sort=False)
    assert chunks.block(pq.read_table(path)) is not None  # no series refused as new
    assert sorted(chunks.names_by_code) == memory.series_names


@pytest.mark.parametrize("scheme", ["expanding", "sliding"])
def test_each_walk_forward_fold_streams_the_windows_and_statistics_it_has_in_memory(tmp_path, scheme):
    """A fold reads only the rows of its period (train_start .. test_end) on both paths; row
    groups wholly outside it are skipped, and the halo never reaches before train_start."""
    from seqtrain.run.walk_forward import fold_configs

    path = write(unequal_series(seed=5), tmp_path / "t.parquet", 41)
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        cfg = compose("config", overrides=[
            "data=parquet", f"data.path={path}", "data.target=close", "data.group_col=symbol",
            "data.label=direction", "data.dead_zone=q0.33", "task=classification", *SETTINGS[:2],
            "data.embargo=2", "eval=walk_forward", "eval.folds=3", "eval.test_size=0.1",
            f"eval.scheme={scheme}", "eval.train_size=0.4"])
    for _, fold_cfg in fold_configs(cfg, str(path)):
        memory, expected = in_memory(fold_cfg.data, "classification", path)
        stream, got = streamed(fold_cfg.data, "classification", path)
        streamed_state, memory_state = stream.state.to_dict(), memory.state.to_dict()
        assert streamed_state["windows"] == memory_state["windows"]
        dead_zone = memory_state["label"]["dead_zone"]
        assert streamed_state["label"]["dead_zone"] == pytest.approx(dead_zone, rel=1e-12)
        assert stream.series_names == memory.series_names
        np.testing.assert_allclose(streamed_state["scaler"]["mean"], memory_state["scaler"]["mean"],
                                   rtol=1e-9)
        assert streamed_state["class_counts_by_split"] == memory_state["class_counts_by_split"]
        for split in ("train", "val", "test"):
            assert_same_windows(expected[split], got[split])
        if scheme == "sliding":
            whole = plan_stream(data_cfg(path, *SETTINGS[:2]), "regression", str(path))
            assert len(stream.row_groups) < len(whole.row_groups)


def _gather(dataset, workers):
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=batch_as_is)
    batches = list(loader)
    assert len(batches) == len(dataset)  # __len__ is exact, so schedulers see the true length
    return collect(batches)


# (row group size, DataLoader workers): many row groups read by two workers a rank, and a table of
# one row group, which cannot be shared out by row groups: its windows still are
@pytest.mark.parametrize(("row_group_size", "workers"), [(23, 2), (10_000, 0)])
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_window_exactly_once_across_two_ranks(tmp_path, split, row_group_size, workers):
    path = write(unequal_series(seed=3), tmp_path / "t.parquet", row_group_size)
    cfg = data_cfg(path, *SETTINGS)
    _, expected = in_memory(cfg, "regression", path)
    stream = plan_stream(cfg, "regression", str(path))
    assert (len(stream.row_groups) == 1) == (row_group_size == 10_000)
    ranks = [StreamingWindows(stream, split, 32, shuffle=split == "train", num_workers=workers, rank=rank,
                              world_size=2, with_eval_fields=True) for rank in range(2)]
    per_rank = [_gather(dataset, workers=workers) for dataset in ranks]
    both = {k: torch.cat([r[k] for r in per_rank]) for k in per_rank[0]}
    assert_same_windows(expected[split], both)
    sizes = [len(r["y"]) for r in per_rank]
    assert abs(sizes[0] - sizes[1]) <= 1  # shares of the windows, not of the row groups
    if split == "train":  # DDP steps together: the same number of batches on every rank
        assert len(ranks[0]) == len(ranks[1])
        loader = DataLoader(ranks[1], batch_size=None, num_workers=workers, collate_fn=batch_as_is)
        assert max(len(b["y"]) for b in loader) <= 32


def test_shard_ranges_cover_every_row_group_once():
    rows = np.array([5, 100, 3, 50, 50, 7, 80])
    for shards in range(1, 10):
        ranges = shard_ranges(rows, shards)
        covered = [g for lo, hi in ranges for g in range(lo, hi)]
        assert covered == list(range(len(rows)))


def test_training_shuffle_differs_between_epochs_but_not_the_windows(tmp_path):
    path = write(unequal_series(seed=4), tmp_path / "t.parquet", 61)
    cfg = data_cfg(path, *SETTINGS)
    dataset = StreamingWindows(plan_stream(cfg, "regression", str(path)), "train", 16, shuffle=True,
                               shuffle_buffer=64, with_eval_fields=True)
    first, second = collect(dataset), collect(dataset)
    assert not torch.equal(first["window"], second["window"])
    assert sorted(map(tuple, first["window"].tolist())) == sorted(map(tuple, second["window"].tolist()))


def test_streamed_window_inputs_do_not_change_when_later_rows_change(tmp_path):
    rng = np.random.default_rng(5)
    frame = unequal_series(seed=5)
    base = write(frame, tmp_path / "base.parquet", 61)
    stream, before = streamed(data_cfg(base, *SETTINGS), "regression", base)
    for split in ("val", "test"):
        windows = before[split]["window"].tolist()
        for i in rng.choice(len(windows), size=4, replace=False):
            end_time = before[split]["end_time"][i].item()
            later = frame["time"].astype("int64") > end_time
            changed = frame.copy()
            changed.loc[later, ["ret", "vol", "rsi", "close"]] = rng.normal(0, 100, (later.sum(), 4))
            path = write(changed, tmp_path / "changed.parquet", 61)
            _, after = streamed(data_cfg(path, *SETTINGS), "regression", path)
            j = after[split]["window"].tolist().index(windows[i])
            torch.testing.assert_close(after[split]["x"][j], before[split]["x"][i])


def test_cli_streams_a_partitioned_directory_and_writes_the_run_folder(run_cli, tmp_path):
    frame = unequal_series(seed=6)
    root = tmp_path / "bars"
    for symbol, part in frame.groupby("symbol"):
        (root / f"symbol={symbol}").mkdir(parents=True)
        write(part.drop(columns="symbol"), root / f"symbol={symbol}" / "part-0.parquet", 40)
    args = ["data=parquet", f"data.path={root}", "data.target=close", "data.group_col=symbol",
            "task=regression", "data.seq_length=10", "trainer=debug", "progress_bar=false", "plots=false",
            "model.hidden_size=8"]
    streamed_run = run_cli(*args, "data.streaming=true")
    assert streamed_run.code == 0, streamed_run.err
    memory_run = run_cli(*args, "data.streaming=false")
    assert memory_run.code == 0, memory_run.err
    a, b = streamed_run.metrics(), memory_run.metrics()
    assert a["windows"] == b["windows"]
    predictions = pd.read_parquet(streamed_run.run_dir / "predictions.parquet")
    reference = pd.read_parquet(memory_run.run_dir / "predictions.parquet")
    assert len(predictions) == a["windows"]["test"]
    key = ["symbol", "time", "window_end"]
    merged = predictions.merge(reference, on=key, suffixes=("", "_memory"))
    assert len(merged) == len(reference)
    assert (merged["y_true"] - merged["y_true_memory"]).abs().max() < 1e-4


def test_auto_streams_when_the_table_exceeds_the_memory_budget(run_cli):
    result = run_cli("data.memory_budget=1KiB", "trainer=debug", "progress_bar=false", "plots=false",
                     "data.generator.length=300", "data.seq_length=8", "model.hidden_size=8")
    assert result.code == 0, result.err
    assert "would exceed data.memory_budget" in " ".join((result.out + result.err).split())
    state = __import__("json").loads((result.run_dir / "data_state.json").read_text())
    assert state["streaming"] is True


def test_streaming_refuses_rows_out_of_order_across_row_groups(run_cli, tmp_path):
    frame = unequal_series(seed=7)
    frame = pd.concat([frame.iloc[200:], frame.iloc[:200]])  # a later chunk starts earlier in time
    path = write(frame, tmp_path / "t.parquet", 50)
    result = run_cli("data=parquet", f"data.path={path}", "data.target=close", "data.group_col=symbol",
                     "data.streaming=true", "task=regression")
    assert result.code == 2
    assert "is not sorted" in result.err and "across row groups" in " ".join(result.err.split())


@pytest.mark.parametrize("streaming", [False, True])
def test_pad_short_keeps_short_histories_left_padded_and_masked(tmp_path, streaming):
    frame = unequal_series(seed=8)
    path = write(frame, tmp_path / "t.parquet", 61)
    cfg = data_cfg(path, "data.seq_length=50", "data.pad_short=true", "data.scaler=none")
    if streaming:
        data, batches = streamed(cfg, "regression", path)
    else:
        data, batches = in_memory(cfg, "regression", path)
    plain, _ = in_memory(data_cfg(path, "data.seq_length=50"), "regression", path)
    windows, plain_windows = data.state.fit_summary["windows"], plain.state.fit_summary["windows"]
    assert windows["train"] > plain_windows["train"]  # short histories kept
    for batch in batches.values():
        row_number = batch["window"][:, 1]
        real = batch["mask"].sum(1)
        assert (real == torch.clamp(row_number + 1, max=50)).all()
        assert (batch["x"][~batch["mask"]] == 0).all()
        assert (batch["mask"].int().diff(dim=1) >= 0).all()  # padding first, then real rows
    if streaming:  # and the streamed windows are the in-memory ones
        _, expected = in_memory(cfg, "regression", path)
        for split in ("train", "val", "test"):
            assert_same_windows(expected[split], batches[split])


def test_pad_short_streams_row_groups_shorter_than_a_window(tmp_path):
    """A streamed chunk may hold fewer rows than seq_length (a small row group and the rows
    carried before it): its padded windows are still the in-memory ones."""
    path = write(unequal_series(seed=8), tmp_path / "t.parquet", 20)
    cfg = data_cfg(path, "data.seq_length=50", "data.pad_short=true")
    _, expected = in_memory(cfg, "regression", path)
    _, got = streamed(cfg, "regression", path)
    for split in ("train", "val", "test"):
        assert_same_windows(expected[split], got[split])


def test_cli_trains_with_pad_short(run_cli, tmp_path):
    path = write(unequal_series(seed=9), tmp_path / "t.parquet", 61)
    result = run_cli("data=parquet", f"data.path={path}", "data.target=close", "data.group_col=symbol",
                     "task=regression", "data.seq_length=60", "data.pad_short=true", "trainer=debug",
                     "progress_bar=false", "plots=false", "model=gru", "model.hidden_size=8")
    assert result.code == 0, result.err


def test_split_by_series_gives_each_series_its_own_chronological_shares(tmp_path):
    frame = unequal_series(seed=10)
    path = write(frame, tmp_path / "t.parquet", 61)
    cfg = data_cfg(path, *SETTINGS, "data.split.by=series", "data.split.val=0.2", "data.split.test=0.1")
    data, expected = in_memory(cfg, "regression", path)
    lengths = frame.groupby("symbol").size().sort_index().to_numpy()
    val_first = lengths - np.round(lengths * 0.1) - np.round(lengths * 0.2)
    test_first = lengths - np.round(lengths * 0.1)
    bounds = {"train": (0, val_first), "val": (val_first, test_first), "test": (test_first, lengths)}
    for split, (first, stop) in bounds.items():
        window = expected[split]["window"].numpy()
        series, end = window[:, 0], window[:, 1]
        first = first if np.isscalar(first) else first[series]
        # every window's end and labels lie in its own series' share (horizon 2, 2 steps)
        assert (end >= first).all() and (end + 3 < stop[series]).all()
    assert len(set(expected["test"]["window"][:, 0].tolist())) == 4  # S3 (40 rows) is too short
    _, got = streamed(cfg, "regression", path)
    for split in ("train", "val", "test"):
        assert_same_windows(expected[split], got[split])
    assert data.state.to_dict()["split"]["by"] == "series"


def test_row_groups_without_windows_of_a_split_are_never_read(tmp_path, monkeypatch):
    from seqtrain.data import source

    path = write(unequal_series(seed=11), tmp_path / "t.parquet", 23)
    stream = plan_stream(data_cfg(path, *SETTINGS), "regression", str(path))
    reads, original = [], source.read_row_group

    def counted(row_group, *args):
        reads.append(row_group)
        return original(row_group, *args)

    monkeypatch.setattr(source, "read_row_group", counted)
    collect(StreamingWindows(stream, "test", 32, shuffle=False))
    holding = np.flatnonzero(stream.row_group_windows["test"])
    first_read = int(stream.halo_start[holding].min())
    assert len(reads) == holding[-1] + 1 - first_read < len(stream.row_groups) / 2


@pytest.mark.parametrize("streaming", [False, True])
def test_calendar_columns_are_chosen_on_training_rows(tmp_path, streaming):
    """Daily rows from mid-January to mid-March: the month varies over the whole table, but not
    over its training rows (January), so it must not become an input."""
    frame = make_table(60, seed=12, start="2022-01-01")
    path = write(frame.drop(columns="symbol"), tmp_path / "t.parquet", 20)
    cfg = data_cfg(path, "data.group_col=null", "data.time_features=true", "data.seq_length=5",
                   "data.split.val_start=2022-02-01", "data.split.test_start=2022-02-15")
    data = (plan_stream if streaming else read_table)(cfg, "regression", str(path))
    assert "month_sin" not in data.input_names and "weekday_sin" in data.input_names
    assert len(data.state.to_dict()["scaler"]["mean"]) == len(data.input_names)


def _epochs_through_the_datamodule(path, cfg, seed, epochs=3, tell_epoch=True):
    data = plan_stream(cfg, "regression", str(path))
    module = SeqDataModule(data, 16, num_workers=2, persistent_workers=True, shuffle_buffer=64, seed=seed)
    module.datasets["train"].with_eval_fields = True
    loader = module.train_dataloader()  # one loader for the whole fit, as Lightning keeps it
    orders = []
    for epoch in range(epochs):
        if tell_epoch:
            loader.set_epoch(epoch)  # what seqtrain's DataEpoch callback does at each epoch start
        orders.append(collect(loader)["window"])
    return orders


def test_streamed_training_with_persistent_workers_shuffles_each_epoch_anew_reproducibly(tmp_path):
    path = write(unequal_series(seed=4), tmp_path / "t.parquet", 61)
    cfg = data_cfg(path, *SETTINGS)
    orders = _epochs_through_the_datamodule(path, cfg, seed=1)
    windows = sorted(map(tuple, orders[0].tolist()))
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        assert not torch.equal(orders[a], orders[b])
    assert all(sorted(map(tuple, order.tolist())) == windows for order in orders)
    again = _epochs_through_the_datamodule(path, cfg, seed=1, tell_epoch=False)  # passes counted
    assert all(torch.equal(x, y) for x, y in zip(orders, again, strict=True))
    other_seed = _epochs_through_the_datamodule(path, cfg, seed=2, epochs=1)
    assert not torch.equal(orders[0], other_seed[0])


@pytest.mark.parametrize("streaming", [False, True])
def test_a_class_no_window_uses_as_a_label_is_accepted_by_both_paths(tmp_path, streaming):
    frame = make_table(300)
    frame["grade"] = np.where(frame["ret"] > 0, "up", "down")
    first_test_row = 255  # 300 rows, test share 0.15: the first test row labels no window (horizon 1)
    frame.loc[first_test_row, "grade"] = "rare"
    path = write(frame, tmp_path / "t.parquet", 50)
    cfg = data_cfg(path, "data.target=grade", "data.group_col=null", "data.seq_length=8")
    data = (plan_stream if streaming else read_table)(cfg, "classification", str(path))
    assert data.state.to_dict()["classes"] == ["down", "up"]
    frame.loc[first_test_row + 1, "grade"] = "rare"  # the label of the first test window
    write(frame, path, 50)
    with pytest.raises(SeqtrainError, match="rare"):
        (plan_stream if streaming else read_table)(cfg, "classification", str(path))


def test_streaming_carries_the_rows_of_the_seasonal_naive_baseline(tmp_path):
    """A season longer than a window: each chunk keeps enough rows of each series before it."""
    path = write(unequal_series(), tmp_path / "t.parquet", 61)
    cfg = data_cfg(path, "data.seq_length=6", "data.horizon=1", "data.output_steps=3")
    memory, expected = in_memory(cfg, "regression", path, season=24)
    stream, got = streamed(cfg, "regression", path, season=24)
    for split in ("train", "val", "test"):
        assert "y_season" in expected[split]
        assert_same_windows(expected[split], got[split])
    # the seasonal value of step j is the label 24 rows before its label row (known at the end)
    block = SeqDataModule(memory, 64, season=24).datasets["test"].block
    ends = torch.as_tensor(memory.ends["test"][:50])
    batch = block.batch(ends)
    labels = torch.from_numpy(memory.labels)
    start = block.series_start[ends]
    for step, offset in enumerate(range(1, 4)):
        rows = ends + offset - 24
        want = torch.where(rows >= start, labels[rows.clamp(min=0)], float("nan"))
        torch.testing.assert_close(batch["y_season"][:, step], want, equal_nan=True)
