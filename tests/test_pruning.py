"""Pruning a search's trials (hparams_search.pruner): a trial that trails the others at the same
epoch stops early, is recorded as pruned (never as failed) and returns the value it reached."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from seqtrain.engine.pruning import PruneRule, PruneTrial, read_trial
from seqtrain.files import write_csv_rows
from tests.conftest import TINY


def _job(sweep, name, values, state="running", monitor="val_loss"):
    """A job folder as a trial leaves it: metrics.csv per epoch, metrics.json once finished."""
    folder = sweep / name
    write_csv_rows(folder / "metrics.csv", [{"epoch": i, "step": 4 * (i + 1), monitor: v}
                                            for i, v in enumerate(values)])
    if state == "failed":
        (folder / "failed.json").write_text('{"error": "x"}')
    elif state != "running":
        pruned = {"epoch": 0} if state == "pruned" else None
        (folder / "metrics.json").write_text(json.dumps({"pruned": pruned}))
    return folder


def _judge(sweep, rule, own, warmup=0, min_trials=2, factor=3, mode="min", monitor="val_loss"):
    """The verdicts of a trial with curve ``own`` after each of its epochs."""
    callback = PruneTrial(PruneRule(rule, warmup, min_trials, factor, sweep), sweep / "own", monitor, mode)
    verdicts = []
    for epochs, value in enumerate(own, 1):
        callback.curve[epochs] = value
        verdicts.append(callback.judge(epochs))
    return verdicts


def test_the_median_rule_compares_the_best_value_so_far_with_the_finished_trials_by_the_same_epoch(tmp_path):
    _job(tmp_path, "0", [0.70, 0.60, 0.50], "complete")
    _job(tmp_path, "1", [0.72, 0.66, 0.64], "complete")
    _job(tmp_path, "2", [0.69, 0.50], "complete")  # stopped early: its best by any later epoch is 0.50
    _job(tmp_path, "3", [0.10, 0.10], "running")  # neither running, pruned nor failed trials set the median
    _job(tmp_path, "4", [0.10], "pruned")
    _job(tmp_path, "5", [0.10], "failed")
    # epoch 1: median of 0.70, 0.72, 0.69 is 0.70; 0.71 trails it
    assert _judge(tmp_path, "median", [0.71])[0] == {"rule": "median", "epoch": 0, "value": 0.71,
                                                      "best": 0.71, "threshold": 0.70, "compared": 3}
    # a tie with the median goes on; the best so far counts, not the last value: 0.59 by epoch 2
    # beats the median 0.60 there; by epoch 3 the median is 0.50 (trial 2's best, by then final)
    verdicts = _judge(tmp_path, "median", [0.70, 0.59, 0.90])
    assert verdicts[0] is None and verdicts[1] is None and verdicts[2]["threshold"] == 0.50
    assert verdicts[2]["value"] == 0.90 and verdicts[2]["best"] == 0.59
    assert _judge(tmp_path, "median", [0.9, 0.9], warmup=1)[0] is None  # warm-up: never judged
    assert _judge(tmp_path, "median", [0.9], min_trials=4) == [None]  # three finished trials are too few
    # higher is better (val_acc): the same rule the other way round, on the trials that log it
    for name, value in (("6", 0.6), ("7", 0.7)):
        _job(tmp_path, name, [value], "complete", monitor="val_acc")
    assert read_trial(tmp_path / "6", "val_loss").curve == {}  # no val_loss: nothing to compare with
    verdict = _judge(tmp_path, "median", [0.64], mode="max", monitor="val_acc")[0]
    assert verdict["threshold"] == pytest.approx(0.65)
    assert _judge(tmp_path, "median", [0.66], mode="max", monitor="val_acc") == [None]
    assert _judge(tmp_path, "median", [0.64], mode="max", monitor="val_acc", min_trials=3) == [None]


def test_halving_keeps_the_best_third_of_the_trials_that_reached_each_rung(tmp_path):
    _job(tmp_path, "0", [0.50, 0.40, 0.30, 0.20], "complete")
    _job(tmp_path, "1", [0.60, 0.55, 0.50], "pruned")  # pruned and running trials compete at a rung too
    _job(tmp_path, "2", [0.70], "running")
    # rung 1 (warmup 0): 0.65 is third of four (0.50, 0.60, 0.65, 0.70), and one of four goes on
    assert _judge(tmp_path, "halving", [0.65])[0]["rung"] == 1
    assert _judge(tmp_path, "halving", [0.50]) == [None]  # a tie with the cut goes on
    # rung 3: only trials 0 and 1 reached it; best by 3 epochs 0.30 and 0.50; 0.45 is second of three
    verdicts = _judge(tmp_path, "halving", [0.45, 0.45, 0.45])
    assert verdicts[:2] == [None, None] and verdicts[2]["rung"] == 3 and verdicts[2]["threshold"] == 0.30
    # warm-up 1: rungs at 2 and 6 epochs; min_trials others must have reached the rung
    assert _judge(tmp_path, "halving", [0.9, 0.9], warmup=1)[0] is None
    assert _judge(tmp_path, "halving", [0.9, 0.9], warmup=1)[1]["rung"] == 2
    assert _judge(tmp_path, "halving", [0.9], min_trials=4) == [None]


def test_bad_pruning_settings_are_one_line(run_cli):
    for overrides, expected in ((["hparams_search.pruner=mean"], "hparams_search.pruner: 'mean'"),
                                (["hparams_search.pruner=median", "hparams_search.min_trials=0"],
                                 "hparams_search.min_trials: 0"),
                                (["hparams_search.pruner=halving", "eval=walk_forward"],
                                 "an eval=walk_forward trial trains one per fold")):
        result = run_cli(*TINY, "hparams_search=optuna", *overrides)
        assert result.code == 2 and "Traceback" not in result.err
        assert expected in " ".join(result.err.split())


# optuna 2's database models use declarative_base, which SQLAlchemy 1.4 warns about on import
@pytest.mark.filterwarnings("ignore:Deprecated API features detected")
def test_a_trial_that_trails_the_others_is_pruned_recorded_and_ranked_by_its_value(run_cli, tmp_path):
    import optuna

    # only the learning rate is searched: trials with the rate that learns are the same run, so
    # none trails another; with seed 42 TPE's random start draws tiny, good, good, tiny
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run_cli("-m", "hparams_search=optuna", *TINY, "hydra.sweeper.n_trials=4", "trainer.max_epochs=3",
                     "optim.lr=choice(0.01,1e-7)", "data.batch_size=64", "optim.weight_decay=0",
                     "model.dropout=0", "scheduler=none", "hparams_search.pruner=median",
                     "hparams_search.warmup_epochs=0", "hparams_search.min_trials=2",
                     f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=pruned")
    assert result.code == 0, result.err  # a pruned trial is no failure
    summary = pd.read_csv(result.run_dir / "summary.csv")
    lr = [dict(o.split("=", 1) for o in row.split())["optim.lr"] for row in summary["overrides"]]
    assert lr == ["1e-07", "0.01", "0.01", "1e-07"] and "error" not in summary
    # job 0 had nothing to be compared with; job 3 trailed the median of jobs 0-2 after one epoch
    assert summary["pruned_epoch"].fillna(-1).tolist() == [-1, -1, -1, 0]
    pruned = json.loads((result.run_dir / "3" / "metrics.json").read_text())
    assert pruned["epochs"] == 1 and pruned["pruned"]["rule"] == "median"
    assert pruned["pruned"]["compared"] == 3
    assert pruned["pruned"]["best"] > pruned["pruned"]["threshold"] and pruned["test"]  # tested all the same
    finished = json.loads((result.run_dir / "1" / "metrics.json").read_text())
    assert "pruned" not in finished and finished["epochs"] == 3
    # Optuna got each trial's best value reached, the pruned one's too, and ranks as the summary does
    study = optuna.load_study(study_name="pruned", storage=storage)
    values = [t.value for t in study.trials]
    assert all(math.isclose(v, b, rel_tol=1e-6) for v, b in zip(values, summary["best_val"], strict=True))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    text = " ".join(result.out.split())
    assert "pruned: 1 of 4 trials (hparams_search.pruner=median), job (epochs trained): 3 (1)" in text
