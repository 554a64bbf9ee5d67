"""Static columns (``data.static``) and the series id (``model.series_embedding``): code columns
among the inputs, checked constant per series, levels fit on training rows, left unscaled,
read at a window's last row, one unknown vector for what training never met."""

from __future__ import annotations

import json
import logging
import logging.handlers

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from hydra import compose, initialize_config_module

from seqtrain.data.chunks import TableChunks
from seqtrain.data.datamodule import SeqDataModule
from seqtrain.data.loading import load_data
from seqtrain.data.memory import read_table
from seqtrain.data.state import DataState
from seqtrain.errors import SeqtrainError
from seqtrain.models.registry import MODELS, build_model
from seqtrain.models.series_inputs import SeriesInputs
from seqtrain.run.predict import Predictor
from tests.conftest import TINY, TINY_MODELS
from tests.helpers import make_table

SECTORS = {"SYM0": "tech", "SYM1": "energy", "SYM2": "tech"}


def static_table(n_rows=200, n_series=3, seed=0) -> pd.DataFrame:
    frame = make_table(n_rows, n_series=n_series, seed=seed)
    frame["sector"] = frame["symbol"].map(SECTORS).fillna("other")
    frame["size"] = frame["symbol"].str[-1].astype(float) * 10.0
    return frame


def data_cfg(path, *overrides):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        cfg = compose("config", overrides=["data=parquet", f"data.path={path}", "data.target=close",
                                           "data.group_col=symbol", "data.features=[ret,vol]",
                                           "data.seq_length=8", *overrides])
    return cfg.data


def test_codes_follow_the_features_unscaled_and_the_state_round_trips(tmp_path):
    path = tmp_path / "t.parquet"
    static_table().to_parquet(path)
    data = read_table(data_cfg(path, "data.static=[sector,size]"), "regression", str(path),
                      series_embedding=True)
    state = data.state
    assert state.inputs == ["ret", "vol", "size", "sector:code", "symbol:series", "close"]
    assert state.static.categorical == {"sector": ["energy", "tech"]}
    assert state.static.numeric == ["size"]
    codes = data.inputs[:, state.code_columns]
    expected_sector = pd.Series(data.series).map({0: 1, 1: 0, 2: 1}).to_numpy()  # SYM0 tech, SYM1 energy
    np.testing.assert_array_equal(codes[:, 0], expected_sector)  # codes as they are, never scaled
    np.testing.assert_array_equal(codes[:, 1], data.series)
    assert state.scaler.mean[state.code_columns].tolist() == [0, 0]
    size = data.inputs[:, state.inputs.index("size")]
    train = np.isin(np.arange(len(size)), data.ends["train"])
    assert abs(size[train].mean()) < 0.2 and size.std() > 0.5  # a numeric static is scaled like a feature
    loaded = DataState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert loaded.inputs == state.inputs and loaded.static == state.static


def test_a_column_that_changes_within_a_series_is_one_line_naming_it(tmp_path):
    frame = static_table()
    frame.loc[(frame.symbol == "SYM1") & (frame.index % 50 == 7), "sector"] = "tech"
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    with pytest.raises(SeqtrainError, match="'sector'.*not constant within series 'SYM1'"):
        read_table(data_cfg(path, "data.static=[sector]"), "regression", str(path))
    frame = static_table()
    frame.loc[frame.index[-1], "size"] = 99.0
    frame.to_parquet(path)
    with pytest.raises(SeqtrainError, match="'size'.*not constant within series 'SYM2'"):
        read_table(data_cfg(path, "data.static=[size]"), "regression", str(path))


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.static=[nope]"], "data.static: column 'nope' not found"),
    (["data.static=[symbol]"], "data.static: 'symbol' is the group column"),
    (["data.static=[sector,sector]"], "data.static: a column is listed twice"),
    (["data.static=[sector]", "data.group_col=null"], "data.static: needs data.group_col"),
    (["data.static=[sector]", "data.streaming=true"], "data.static needs the whole table in memory"),
])
def test_bad_static_settings_are_one_line(tmp_path, overrides, message):
    path = tmp_path / "t.parquet"
    static_table().to_parquet(path)
    with pytest.raises(SeqtrainError, match=message):
        load_data(data_cfg(path, *overrides), "regression", str(path))


def test_levels_come_from_training_rows_and_others_get_the_unknown_code(tmp_path):
    frame = static_table(n_rows=200, n_series=4)
    frame.loc[frame.symbol == "SYM3", "sector"] = "utility"
    frame = frame[(frame.symbol != "SYM3") | (frame.time >= frame.time.iloc[190])]  # only late rows
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = read_table(data_cfg(path, "data.static=[sector]", "data.pad_short=true"), "regression",
                      str(path))
    assert data.state.static.categorical == {"sector": ["energy", "tech"]}  # "utility": test rows only
    late = data.series == data.state.series_names.index("SYM3")
    assert (data.inputs[late, data.state.code_columns[0]] == 2).all()  # one past the known levels


def test_streamed_windows_carry_the_series_code_as_in_memory(tmp_path):
    import pyarrow.parquet as pq
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(static_table(), preserve_index=False), path, row_group_size=77)
    streamed = load_data(data_cfg(path, "data.streaming=true"), "regression", str(path),
                         series_embedding=True)
    in_memory = load_data(data_cfg(path), "regression", str(path), series_embedding=True)
    assert streamed.state.inputs == in_memory.state.inputs
    np.testing.assert_allclose(streamed.state.scaler.std, in_memory.state.scaler.std, rtol=1e-12)
    module = SeqDataModule(streamed, batch_size=1000)
    batch = next(iter(module.datasets["test"]))
    codes = batch["x"][:, :, streamed.state.code_columns[0]]
    assert (codes == batch["window"][:, :1].float()).all()  # every row of a window: its series' code


def test_cases_refuse_series_inputs(tmp_path):
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        cfg = compose("config", overrides=["data=cases"])
    with pytest.raises(SeqtrainError, match="data=cases: each case is its own series"):
        load_data(cfg.data, "classification", str(tmp_path / "x.parquet"), series_embedding=True)


def wrapped(name, codes=(3, 5), widths=(2, 4), n_features=4):
    inner = build_model(name, {}, n_features + sum(widths), 2, 1, 0, seq_length=12)
    columns = list(range(n_features, n_features + len(codes)))
    return SeriesInputs(inner, n_features + len(codes), columns, list(codes), list(widths)).eval()


def coded_windows(batch=5, length=12, n_features=4, codes=((0, 1), (2, 4), (1, 0), (2, 2), (0, 3))):
    x = torch.randn(batch, length, n_features + 2)
    x[:, :, n_features:] = torch.tensor(codes, dtype=torch.float32)[:batch, None, :]
    return x


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padded_rows_never_change_a_wrapped_model_and_series_are_told_apart(name):
    torch.manual_seed(0)
    model = wrapped(name)
    x = coded_windows()
    mask = torch.ones(5, 12, dtype=torch.bool)
    mask[:, :4] = False
    padded = x * mask.unsqueeze(-1)
    other = padded.clone()
    other[:, :4, :4] = torch.randn(5, 4, 4)  # what padded rows hold must not matter ...
    other[:, :4, 4:] = 0
    with torch.no_grad():
        a, b = model(padded, mask=mask), model(other * mask.unsqueeze(-1), mask=mask)
        torch.testing.assert_close(a, b)
        swapped = padded.clone()
        swapped[:, :, 5] = torch.tensor([4.0, 3, 2, 1, 0])[:, None] * mask  # ... which series does
        assert not torch.allclose(model(swapped, mask=mask), a)


def test_a_code_training_never_met_reads_the_mean_of_the_known_vectors():
    model = wrapped("lstm", codes=(3,), widths=(2,), n_features=1)
    seen = []
    model.model.forward = lambda x, **kwargs: seen.append(x) or torch.zeros(len(x), 1, 2)
    x = torch.zeros(2, 12, 2)
    x[0, :, 1], x[1, :, 1] = 3, 7  # one past the known codes, and far past them
    model(x)
    mean = model.embeddings[0].weight.mean(0)
    torch.testing.assert_close(seen[0][:, -1, 1:], mean.expand(2, 2))


def planted_series_table(path, n_series=6, n_rows=240):
    """The next move's direction is each series' own (its sign by series), features pure noise:
    only a model that knows the series can beat a coin."""
    rng = np.random.default_rng(0)
    frames = []
    for s in range(n_series):
        up = (rng.random(n_rows) < (0.9 if s % 2 else 0.1)).astype(np.int64)
        frames.append(pd.DataFrame({"time": pd.date_range("2022-01-03", periods=n_rows, freq="D"),
                                    "symbol": f"S{s}", "noise": rng.normal(size=n_rows), "up": up}))
    pd.concat(frames).to_parquet(path)


def test_a_series_embedding_learns_what_only_the_series_tells(run_cli, tmp_path):
    path = tmp_path / "planted.parquet"
    planted_series_table(path)
    common = ["data=parquet", f"data.path={path}", "data.target=up", "data.group_col=symbol",
              "data.horizon=0", "data.target_as_input=false", "data.seq_length=4", "trainer.max_epochs=6",
              "data.batch_size=32",
              "progress_bar=false", "plots=false", "early_stopping.patience=null", *TINY_MODELS["lstm"]]
    off, on = run_cli(*common), run_cli(*common, "model.series_embedding=4")
    assert off.code == 0 and on.code == 0, on.err
    assert on.metrics()["test"]["test_acc"] > 0.8 > 0.65 > off.metrics()["test"]["test_acc"]


def test_predict_uses_the_state_codes_and_new_series_read_the_unknown_vector(run_cli, tmp_path, capsys):
    trained = run_cli(*TINY, "data.generator.name=load", "data.generator.static=true", "task=regression",
                      "data.static=[peak,region]", "model.series_embedding=4", "data.horizon=2")
    assert trained.code == 0, trained.err
    state = json.loads((trained.run_dir / "data_state.json").read_text())
    assert state["inputs"][:4] == ["direction", "peak", "region:code", "symbol:series"]
    predictor = Predictor.from_run(trained.run_dir, device="cpu")
    table = pd.read_parquet(trained.run_dir / "data" / "synthetic.parquet")
    reported = pd.read_parquet(trained.run_dir / "predictions.parquet")
    again = predictor.predict_frame(table)
    joined = reported.merge(again, on=["symbol", "window_end", "step"], suffixes=("", "_new"))
    assert len(joined) == len(reported)
    np.testing.assert_allclose(joined["y_pred_new"], joined["y_pred"], rtol=1e-5, atol=1e-5)

    renamed = table[table.symbol == "S0"].assign(symbol="NEW", region="elsewhere")
    with pytest.raises(SeqtrainError, match="never occurred in training"):
        predictor.predict_frame(renamed)
    capsys.readouterr()
    warned = logging.handlers.BufferingHandler(100)
    warned.setLevel(logging.WARNING)  # seqtrain predict shows warnings only: the line must be one
    logging.getLogger("seqtrain").addHandler(warned)
    try:
        new = predictor.predict_frame(renamed, allow_new_series=True)
    finally:
        logging.getLogger("seqtrain").removeHandler(warned)
    assert np.isfinite(new["y_pred"]).all()
    said = " ".join(capsys.readouterr().out.split())
    assert "region:code: 400, symbol:series: 400) read the shared unknown vector" in said
    assert [r for r in warned.buffer if "unknown vector" in r.getMessage()]


def test_a_bad_series_embedding_is_one_line(run_cli):
    result = run_cli(*TINY, "model.series_embedding=-2")
    assert result.code != 0
    assert "model.series_embedding" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("streaming", ["false", "true"])
def test_a_series_without_training_rows_reads_the_unknown_vector(tmp_path, streaming):
    """A series met only after the training period (or absent from a walk-forward fold's training
    rows) has no learned vector of its own: it must read the unknown one, not an untrained one."""
    frame = static_table(n_rows=200, n_series=4)
    frame = frame[(frame.symbol != "SYM3") | (frame.time >= frame.time.iloc[190])]  # test rows only
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = load_data(data_cfg(path, "data.pad_short=true", f"data.streaming={streaming}"), "regression",
                     str(path), series_embedding=True)
    assert data.state.static.series == ["SYM0", "SYM1", "SYM2"]
    batch = next(iter(SeqDataModule(data, batch_size=1000).test_dataloader()))
    late = batch["window"][:, 0] == data.state.series_names.index("SYM3")
    assert late.any()
    codes = batch["x"][:, -1, data.state.code_columns[0]]
    assert (codes[late] == 3).all() and (codes[~late] < 3).all()  # one past the known series


def test_the_leakage_audit_leaves_static_columns_alone(tmp_path):
    """A static column is constant within its series, so it can hold no later row: one that tells
    the label apart (a kind of series that mostly goes up) is what it is for, not a leak."""
    from seqtrain.data.audit import leakage_audit
    path = tmp_path / "planted.parquet"
    planted_series_table(path, n_series=4)
    frame = pd.read_parquet(path)
    frame["kind"] = np.where(frame.symbol.str[-1].astype(int) % 2 == 1, "odd", "even")
    frame["odd"] = (frame.kind == "odd").astype(float)
    frame["up"] = (frame.kind == "odd").astype(np.int64)  # the kind decides the label
    frame.to_parquet(path)
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        cfg = compose("config", overrides=["data=parquet", f"data.path={path}", "data.target=up",
                                           "data.group_col=symbol", "data.features=[noise]", "data.horizon=0",
                                           "data.target_as_input=false", "data.seq_length=4",
                                           "data.static=[kind,odd]"])
    data = read_table(cfg.data, "classification", str(path), series_embedding=True)
    result = leakage_audit(cfg.data, "classification", data, SeqDataModule(data, batch_size=64))
    assert result["flagged"] == []
    assert set(result["scores"]) == {"noise"}


def test_the_estimator_takes_static_columns_among_the_columns_of_x(tmp_path):
    from seqtrain.api import SequenceModel
    frame = static_table(n_rows=120, n_series=3)
    X = frame.set_index(["time", "symbol"])[["ret", "vol", "size", "sector"]]
    y = frame.set_index(["time", "symbol"])["close"]
    model = SequenceModel(task="regression", seq_length=8, max_epochs=1, hidden_size=8, num_layers=1,
                          progress_bar=False, plots=False, series_embedding=4, run_dir=tmp_path / "run",
                          overrides=["data.static=[sector,size]"]).fit(X, y)
    assert model.run_.data_state.inputs == ["ret", "vol", "size", "sector:code", "symbol:series"]
    assert model.predict(X).notna().sum() > 0


def test_predict_refuses_a_static_column_that_changes_within_a_series(tmp_path):
    path = tmp_path / "t.parquet"
    frame = static_table(n_rows=120, n_series=3)
    frame.to_parquet(path)
    data = read_table(data_cfg(path, "data.static=[sector,size]"), "regression", str(path),
                      series_embedding=True)
    for column, value in (("sector", "energy"), ("size", 99.0), ("sector", "mining")):
        changed = frame.copy()
        changed.loc[(changed.symbol == "SYM2") & (changed.time >= changed.time.iloc[100]), column] = value
        table = pa.Table.from_pandas(changed, preserve_index=False)
        chunks = TableChunks(data.state, allow_new_series=False, sort=False)
        with pytest.raises(SeqtrainError, match=f"data.static: column '{column}' of the table is not "
                                                "constant within series 'SYM2'"):
            for part in (table.slice(0, 300), table.slice(300)):  # changed within a chunk, and across
                chunks.carry(chunks.block(part))
        chunks = TableChunks(data.state, allow_new_series=False, sort=False)
        with pytest.raises(SeqtrainError, match="not constant within series 'SYM2'"):
            for part in (table.slice(0, 340), table.slice(340)):  # SYM2's change falls between chunks
                chunks.carry(chunks.block(part))


def test_augmentation_never_changes_a_window_s_codes(tmp_path):
    """Scaling, warps, dropout or jitter of a code column would feed another series' vector (code
    3 scaled by 1.2 reads series 4); mixup takes the codes of the window that weighs more."""
    from seqtrain.engine.assemble import build_module
    path = tmp_path / "t.parquet"
    static_table(n_rows=120, n_series=3).to_parquet(path)
    every = [f"augment.{name}.p=1" for name in ("scaling", "magnitude_warp", "time_warp", "window_slice")]
    with initialize_config_module("seqtrain.conf", version_base="1.3"):
        cfg = compose("config", overrides=[
            "data=parquet", f"data.path={path}", "data.target=up", "data.group_col=symbol",
            "data.features=[ret,vol]", "data.horizon=0", "data.target_as_input=false", "data.seq_length=8",
            "task=classification", "data.static=[sector]", "model.series_embedding=4", "augment=light",
            "augment.jitter.sigma=0.6", "augment.channel_dropout.p=1", "augment.channel_dropout.rate=0.5",
            "augment.mixup.p=1", *every])
    data = read_table(cfg.data, "classification", str(path), series_embedding=True)
    module = build_module(cfg, data)
    batch = next(iter(SeqDataModule(data, batch_size=200).test_dataloader()))
    torch.manual_seed(0)
    x, _ = module.augmenter(batch["x"], batch["y"])
    codes, before = x[..., data.state.code_columns], batch["x"][..., data.state.code_columns]
    assert not torch.equal(x, batch["x"])
    assert (codes == codes[:, -1:]).all()  # constant over each window, whole numbers
    assert torch.equal(codes, codes.round())
    assert {tuple(c) for c in codes[:, -1].tolist()} <= {tuple(c) for c in before[:, -1].tolist()}


def test_a_boolean_static_column_is_a_code_and_never_also_a_feature(tmp_path):
    frame = static_table()
    frame["big"] = frame.symbol.isin(["SYM0", "SYM2"])
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = read_table(data_cfg(path, "data.static=[big]", "data.features=null"), "regression", str(path))
    assert "big" not in data.state.features and "big:code" in data.state.inputs
    with pytest.raises(SeqtrainError, match="data.features: 'big' is a categorical static column"):
        read_table(data_cfg(path, "data.static=[big]", "data.features=[ret,big]"), "regression", str(path))
