"""Distributed data-parallel training on CPU: 2 processes (gloo) against one, end to end."""

import json

import numpy as np
import pandas as pd
import pytest

from seqtrain import cli
from seqtrain.engine.distributed import cores
from tests.conftest import TINY_MODELS, TINY_RUN

# weights that barely move (lr 1e-9), so a 2-process run and a 1-process run evaluate the same
# network: what differs is only how the windows are shared out and how metrics are reduced
FROZEN = [*(a for a in TINY_RUN if "limit_" not in a), *TINY_MODELS["lstm"], "optim.lr=1e-9",
          "trainer.max_epochs=1", "scheduler=none", "data.batch_size=64"]
DDP = ["trainer=ddp", "trainer.devices=2"]


def _outputs(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics, pd.read_parquet(run_dir / "predictions.parquet")


@pytest.mark.parametrize("streaming", ["false", "true"])
def test_two_processes_evaluate_every_window_once_like_one(run_cli, streaming):
    args = [*FROZEN, f"data.streaming={streaming}", "calibrate=temperature"]
    one = run_cli(*args)
    two = run_cli(*DDP, *args)
    assert one.code == 0 and two.code == 0, two.err
    (m1, p1), (m2, p2) = _outputs(one.run_dir), _outputs(two.run_dir)
    # validation and test metrics reduced over both ranks, each window counted once
    for split in ("best_val", "test"):
        assert m2[split].keys() == m1[split].keys()
        for key, value in m1[split].items():
            assert m2[split][key] == pytest.approx(value, abs=1e-5), key
    assert m2["baseline_test"] == pytest.approx(m1["baseline_test"])
    # predictions.parquet gathers both ranks' test windows, once each, in the same order
    assert len(p2) == len(p1) == m1["windows"]["test"]
    assert (p2["window_end"].to_numpy() == p1["window_end"].to_numpy()).all()
    np.testing.assert_allclose(p2["prob_1"], p1["prob_1"], atol=1e-5)
    # the temperature is fit on every rank's validation windows together, as one process fits it
    fits = [json.loads((run.run_dir / "calibration.json").read_text()) for run in (one, two)]
    assert fits[1]["validation_windows"] == fits[0]["validation_windows"] == m1["windows"]["val"]
    assert fits[1]["temperature"] == pytest.approx(fits[0]["temperature"], rel=1e-4)
    # training: the 792 windows shared out, 396 a rank, so about half the optimizer steps
    assert m1["windows"]["train"] == 792 and (m1["steps"], m2["steps"]) == (13, 7)
    assert m2["threads"] == max(1, cores() // 2)  # the machine's cores shared out between the two
    # rank 0 alone wrote the folder: one checkpoint pair, no leftovers of the other rank
    assert sorted(p.name for p in (two.run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not (two.run_dir / ".ddp").exists()  # the processes' job and logs, removed after success


def test_a_ddp_run_learns_and_resumes_under_ddp(run_cli):
    args = [*DDP, *(a for a in TINY_RUN if "limit_train" not in a), *TINY_MODELS["lstm"],
            "early_stopping.patience=null"]
    first = run_cli(*args)
    assert first.code == 0, first.err
    metrics = first.metrics()
    assert metrics["epochs"] == 2 and metrics["train_samples_per_s"] > 0
    assert metrics["steps"] == 2 * 4  # ceil(396 / 128) batches a rank, 2 epochs
    (first.run_dir / "metrics.json").unlink()  # as a kill during testing leaves it
    cli.resume(str(first.run_dir), ["trainer.max_epochs=3"])
    resumed = json.loads((first.run_dir / "metrics.json").read_text())
    assert pd.read_csv(first.run_dir / "metrics.csv")["epoch"].tolist() == [0, 1, 2]
    assert resumed["steps"] == 3 * 4 and resumed["epochs"] == 3


def test_a_rank_that_fails_stops_the_run_with_its_one_line_error(run_cli):
    result = run_cli(*DDP, *TINY_RUN, *TINY_MODELS["lstm"], "task=regression", "optim=sgd", "optim.lr=1e12",
                     "trainer.gradient_clip_val=null", "instance_norm=none")
    assert result.code == 2 and "Traceback" not in result.err
    assert "loss became" in " ".join(result.err.split())
