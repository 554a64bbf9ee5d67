"""What a case run reports: 1-NN and majority baselines beside the model, per-class figures, one
prediction row per case; and ``seqtrain predict`` on new cases by the training rules."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from seqtrain.report.cases import class_report, nearest_neighbour
from tests.data.test_cases import case_table

TINY_CASES = ["data=cases", "progress_bar=false", "plots=false", "trainer.max_epochs=2",
              "data.epoch_cases=64", "model.hidden_size=8", "model.num_layers=1", "data.batch_size=16"]


def test_nearest_neighbour_is_the_closest_training_case_by_euclidean_distance():
    rng = np.random.default_rng(0)
    train, test = rng.standard_normal((40, 6, 3)), rng.standard_normal((25, 6, 3))
    labels = rng.integers(0, 4, 40)
    found = nearest_neighbour(torch.from_numpy(train), labels, torch.from_numpy(test), chunk=7)
    distances = ((test[:, None] - train[None]) ** 2).sum((2, 3))
    np.testing.assert_array_equal(found, labels[distances.argmin(1)])


def test_class_report_matches_scikit_learn():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), 200)
    probs[np.arange(200), truth] += 0.3 * rng.random(200)  # some skill
    predicted = probs.argmax(1)
    report = class_report(truth, predicted, probs, 3, ["a", "b", "c"])
    assert report["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    for j, name in enumerate("abc"):
        assert report["classes"][name]["auroc"] == pytest.approx(roc_auc_score(truth == j, probs[:, j]))
    assert np.asarray(report["confusion"]).sum() == 200


def test_a_case_run_reports_baselines_per_class_figures_and_one_row_per_case(run_cli, tmp_path):
    table = tmp_path / "cases.parquet"
    case_table(48).to_parquet(table, index=False)
    result = run_cli(*TINY_CASES, f"data.path={table}")
    assert result.code == 0, result.err
    metrics = result.metrics()
    assert set(metrics["baseline_test"]) >= {"majority_acc", "nearest_neighbour_acc"}
    assert metrics["skill"]["independent"] and metrics["skill"]["block"] == 1
    assert set(metrics["skill"]["baseline_intervals"]) == {"majority", "nearest_neighbour"}
    assert set(metrics["per_class"]["classes"]) == {"a", "b", "c"}
    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    state = json.loads((result.run_dir / "data_state.json").read_text())
    assert len(predictions) == state["windows"]["test"] == predictions["case"].nunique()
    assert "time" not in predictions and "baseline_nearest_neighbour" in predictions
    assert "cases train/val/test" in result.out

    # predict: the same cases give the test pass's probabilities; new cases without labels work
    out = tmp_path / "predicted.parquet"
    code = run_predict(run_cli, result.run_dir, table, out)
    assert code == 0
    again = pd.read_parquet(out).set_index("case").loc[predictions["case"]]
    np.testing.assert_allclose(again.filter(like="prob_").to_numpy(),
                               predictions.filter(like="prob_").to_numpy(), atol=1e-5)
    unlabelled = tmp_path / "new.parquet"
    case_table(6, seed=9).drop(columns="label").assign(case=lambda f: "new_" + f.case).to_parquet(unlabelled)
    assert run_predict(run_cli, result.run_dir, unlabelled, tmp_path / "new_out.parquet") == 0
    assert len(pd.read_parquet(tmp_path / "new_out.parquet")) == 6
    missing = tmp_path / "missing.parquet"
    case_table(6).drop(columns="c1").to_parquet(missing)
    assert run_predict(run_cli, result.run_dir, missing, tmp_path / "never.parquet") != 0
    assert not (tmp_path / "never.parquet").exists()


def run_predict(run_cli, run_dir, table, output) -> int:
    from seqtrain import cli

    try:
        cli.subcommand("predict", [f"run={run_dir}", f"data.path={table}", f"output={output}"])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0
