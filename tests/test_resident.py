"""data.device_resident: the table kept where training runs, batches gathered there without a
DataLoader. Forced onto the CPU here (the GPU is the same code on another device)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from seqtrain.data.datamodule import ResidentBatches, SeqDataModule
from seqtrain.data.memory import read_table
from tests.conftest import TINY_MODELS, TINY_RUN
from tests.data.test_streaming import SETTINGS, assert_same_windows, data_cfg, unequal_series, write


@pytest.mark.parametrize("world", [1, 2])
def test_resident_batches_are_the_loader_windows_each_once(tmp_path, world):
    path = write(unequal_series(seed=5), tmp_path / "t.parquet")
    cfg = data_cfg(path, *SETTINGS)
    data = read_table(cfg, "regression", str(path))
    plain = SeqDataModule(data, 32)
    ranks = [SeqDataModule(data, 32, device="cpu", rank=r, world=world) for r in range(world)]
    for split in ("train", "val", "test"):
        expected = plain.datasets[split]
        expected.with_eval_fields = True
        loaders = []
        for module in ranks:
            module.datasets[split].with_eval_fields = True
            loaders.append(module._loader(split, shuffle=split == "train"))
        assert all(isinstance(loader, ResidentBatches) for loader in loaders)
        batches = [b for loader in loaders for b in loader]
        got = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
        assert_same_windows(expected.__getitems__(list(range(len(expected)))), got)
        assert len({len(loader) for loader in loaders}) == 1 or split != "train"
        assert all(len(b["y"]) <= 32 for b in batches)
    train = ranks[0]._loader("train", shuffle=True)
    first = torch.cat([b["y"].flatten() for b in train])
    train.set_epoch(1)
    again = torch.cat([b["y"].flatten() for b in train])
    assert not torch.equal(first, again)  # a new order each epoch
    if world == 1:
        assert torch.equal(first.sort().values, again.sort().values)  # of the same windows


def test_a_resident_run_evaluates_like_a_loader_run(run_cli):
    frozen = [*(a for a in TINY_RUN if "limit_" not in a), *TINY_MODELS["lstm"], "optim.lr=1e-9",
              "trainer.max_epochs=1", "scheduler=none", "data.batch_size=64"]
    loader = run_cli(*frozen, "data.device_resident=false")
    resident = run_cli(*frozen, "data.device_resident=true")
    assert loader.code == 0 and resident.code == 0, resident.err
    m1, m2 = (json.loads((r.run_dir / "metrics.json").read_text()) for r in (loader, resident))
    assert (m1["device_resident"], m2["device_resident"]) == (False, True)
    for split in ("best_val", "test"):
        for key, value in m1[split].items():
            assert m2[split][key] == pytest.approx(value, abs=1e-6), key
    assert m2["baseline_test"] == pytest.approx(m1["baseline_test"])
    p1, p2 = (pd.read_parquet(r.run_dir / "predictions.parquet") for r in (loader, resident))
    assert (p1["window_end"].to_numpy() == p2["window_end"].to_numpy()).all()
    np.testing.assert_allclose(p2["prob_1"], p1["prob_1"], atol=1e-6)
    assert m2["steps"] == m1["steps"] == 13  # ceil(792 / 64): every window once an epoch


def test_auto_keeps_cpu_runs_on_the_loader_and_a_bad_value_is_one_line(run_cli):
    result = run_cli(*TINY_RUN, *TINY_MODELS["lstm"])
    assert result.code == 0 and result.metrics()["device_resident"] is False
    result = run_cli(*TINY_RUN, "data.device_resident=sometimes")
    assert result.code == 2 and "data.device_resident: 'sometimes'; choose auto, true or false" in \
        " ".join(result.err.split())
