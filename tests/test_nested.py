"""The nested out-of-sample result of a sweep over walk-forward jobs (seqtrain/report/nested.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from seqtrain.files import merge_into_json
from seqtrain.report.baselines import pooled_skill
from seqtrain.report.nested import (
    WalkForwardJob,
    agreeing_jobs,
    block_choices,
    load_job,
    nested_frame,
    nested_lines,
    nested_result,
    nested_table_rows,
    selection_scores,
)

# fold j's best val_loss, per job (rows) and fold (columns)
SCORES = np.array([[0.50, 0.70, 0.40],
                   [0.60, 0.55, 0.90]])


def test_each_block_goes_to_the_job_best_on_the_folds_up_to_it():
    # job 0's means: 0.50, 0.60, 0.5333; job 1's: 0.60, 0.575, 0.6833
    np.testing.assert_allclose(selection_scores(SCORES), [[0.50, 0.60, 1.6 / 3], [0.60, 0.575, 2.05 / 3]])
    assert block_choices(SCORES, "min") == [0, 1, 0]
    assert block_choices(1 - SCORES, "max") == [0, 1, 0]


def test_a_blocks_choice_never_reads_the_next_folds_validation_value():
    # Fold 1's validation block is test block 0: with it, block 0 would go to job 1 (0.6 > 0.575).
    assert np.mean(SCORES[0, :2]) > np.mean(SCORES[1, :2])
    rng = np.random.default_rng(0)
    for k in range(SCORES.shape[1]):
        for _ in range(20):  # anything in folds k+1.. (their validation blocks cover block k on)
            later = SCORES.copy()
            later[:, k + 1:] = rng.uniform(0, 2, size=later[:, k + 1:].shape)
            assert block_choices(later, "min")[:k + 1] == block_choices(SCORES, "min")[:k + 1]


def test_ties_go_to_the_earlier_job_and_a_failed_fold_never_wins():
    assert block_choices(np.array([[0.5, 0.6], [0.5, 0.7]]), "max") == [0, 1]
    assert block_choices(np.array([[np.nan, 0.1], [0.9, 0.9]]), "min") == [1, 1]
    assert block_choices(np.array([[np.inf, 0.1], [np.nan, 0.2]]), "min") == [0, 0]


def _predictions(right: list[list[bool]], baselines: tuple[str, ...] = ("majority",)) -> pd.DataFrame:
    """Two series x 3 hourly windows per fold; ``right[fold]``: which of its 6 windows the model
    gets right (the truth is 1, the majority baseline says 1 on every other window)."""
    rows = []
    for fold, hits in enumerate(right):
        for i, hit in enumerate(hits):
            symbol, t = ("a", "b")[i % 2], fold * 3 + i // 2
            rows.append({"symbol": symbol, "window_end": pd.Timestamp("2024-01-01") + pd.Timedelta(hours=t),
                         "step": 1, "y_true": 1, "y_pred": int(hit), "fold": fold,
                         **{f"baseline_{b}": int(t % 2 == 0) for b in baselines}})
    return pd.DataFrame(rows)


A = [[True] * 5 + [False], [True, True] + [False] * 4]  # 5/6 then 2/6
B = [[True] * 3 + [False] * 3, [True] * 6]  # 3/6 then 6/6


def test_the_nested_windows_are_each_blocks_chosen_job_over_many_series():
    frames = {0: _predictions(A), 1: _predictions(B, ("majority", "persistence"))}
    nested = nested_frame(frames, [0, 1])
    assert len(nested) == 12 and nested.groupby("fold")["symbol"].nunique().tolist() == [2, 2]
    assert (nested["y_pred"] == nested["y_true"]).mean() == 11 / 12
    assert "baseline_persistence" not in nested  # job 0 has no such baseline


def _job(tmp_path, name: str, right, scores, folds=None, horizon=1) -> WalkForwardJob:
    folder = tmp_path / name
    folder.mkdir()
    frame = _predictions(right)
    frame.to_parquet(folder / "predictions.parquet")
    blocks = [{"fold": k, "windows_test": 6, "test_acc": float(np.mean(hits))}
              for k, hits in enumerate(right)]
    pooled = pooled_skill("classification", frame, "symbol", 0)
    return WalkForwardJob(name, folds or (("2024-01-01T00:00:00", "2024-01-01T03:00:00"),
                                          ("2024-01-01T03:00:00", None)),
                          {"data.horizon": horizon}, "val_loss", "min", scores, pooled, folder,
                          seed=0, group_col="symbol", task="classification", blocks=blocks)


def test_the_search_scores_each_block_with_what_was_known_before_it(tmp_path):
    # job 0 is best on fold 0, job 1 on folds 0..1 (the sweep's ★): the choice changes
    jobs = [_job(tmp_path, "0", A, [0.4, 0.7]), _job(tmp_path, "1", B, [0.6, 0.45]),
            _job(tmp_path, "2", B, [0.1, 0.1], folds=(("2024-01-01T01:00:00", None),))]
    result = nested_result(jobs)
    assert [b["job"] for b in result["blocks"]] == ["0", "1"]
    assert result["value"] == pytest.approx(11 / 12) and result["windows"] == 12
    star = result["selected_in_sample"]  # the job best on every fold: its pooled 9/12
    assert star["job"] == "1" and star["value"] == pytest.approx(9 / 12) != result["value"]
    assert nested_result(jobs, star="0")["selected_in_sample"]["value"] == pytest.approx(7 / 12)
    expected = pd.concat([_predictions(A).query("fold == 0"), _predictions(B).query("fold == 1")])
    assert result["interval"] == pooled_skill("classification", expected, "symbol", 0)["interval"]
    assert list(result["left_out"]) == ["2"] and "folds differ" in result["left_out"]["2"]
    assert result["blocks"][1]["selection_val_loss"] == pytest.approx(0.525)


def test_the_star_mark_stays_on_the_sweeps_star_when_it_is_left_out(tmp_path):
    # job 2 is the sweep's ★ (best val_loss) but tests other folds: job 1, the best of the
    # compared jobs, stands in as selected in-sample, without the ★
    jobs = [_job(tmp_path, "0", A, [0.4, 0.7]), _job(tmp_path, "1", B, [0.6, 0.45]),
            _job(tmp_path, "2", B, [0.1, 0.1], folds=(("2024-01-01T01:00:00", None),))]
    left_out = nested_result(jobs, star="2")
    assert left_out["selected_in_sample"]["job"] == "1" and not left_out["selected_in_sample"]["star"]
    rows = nested_table_rows(left_out)
    assert rows[0]["job"] == "1" and "★ job is left out" in rows[0]["overrides"]
    assert "job 1 ★" not in nested_lines(left_out)[-1]
    kept = nested_result(jobs, star="1")
    assert nested_table_rows(kept)[0]["job"] == "1 ★" and "job 1 ★" in nested_lines(kept)[-1]


def test_jobs_that_disagree_with_the_majority_are_named_and_left_out(tmp_path):
    jobs = [_job(tmp_path, str(i), A, [0.5, 0.5], horizon=h) for i, h in enumerate((1, 2, 2, 1))]
    kept, left_out = agreeing_jobs(jobs)  # two against two: the first job's side
    assert [j.name for j in kept] == ["0", "3"]
    assert set(left_out) == {"1", "2"} and "data.horizon" in left_out["1"]
    alone = nested_result(jobs[:2])
    assert "skipped" in alone and "blocks" not in alone


def _job_folder(tmp_path, name: str, profit: float):
    """A finished one-fold walk-forward job folder with triple-barrier labels at ``profit``."""
    folder = tmp_path / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / "fold_00").mkdir()
    data = {"kind": "parquet", "path": "t.parquet", "target": "close", "label": "triple_barrier",
            "horizon": 5, "barrier": {"profit": profit, "loss": 1.0, "span": 20}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"task": "classification", "data": data}))
    (folder / "fold_00" / "metrics.json").write_text(json.dumps({"best_val": {"val_loss": 0.5}}))
    (folder / "metrics.json").write_text(json.dumps(
        {"eval": "walk_forward", "monitor": "val_loss", "mode": "min", "task": "classification",
         "folds": [{"fold": 0, "test_start": 10, "test_end": None}], "pooled": {}}))
    return load_job(folder)


def test_jobs_with_other_barriers_predict_other_labels(tmp_path):
    kept, left_out = agreeing_jobs([_job_folder(tmp_path, "0", 1.0), _job_folder(tmp_path, "1", 3.0),
                                    _job_folder(tmp_path, "2", 1.0)])
    assert [j.name for j in kept] == ["0", "2"] and "data.barrier" in left_out["1"]


def test_summary_json_keeps_what_others_wrote(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"dsr": {"value": 0.3}}))
    merge_into_json(path, {"nested": {"value": 0.5}})
    assert json.loads(path.read_text()) == {"dsr": {"value": 0.3}, "nested": {"value": 0.5}}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
