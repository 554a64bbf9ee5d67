"""The nested out-of-sample result of a sweep over walk-forward jobs.

A sweep ranks its walk-forward jobs by the mean of their folds' best validation values, and fold
k's validation block is (with the default sizes) fold k-1's test block: the best job's pooled
test result was chosen on most of its own test rows. The search's own out-of-sample result
replays the choice block by block instead: test block k is scored with the job that was best on
what was known before block k started, and the blocks are pooled with the same time-block
bootstrap interval and skill as a single walk-forward run (``baselines.pooled_skill``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from seqtrain.data.columns import utc_times
from seqtrain.files import merge_into_json, write_csv
from seqtrain.report.baselines import pooled_skill

RULE = ("test block k is scored with the job whose mean best monitored validation value over folds "
        "0..k is best (fold j's validation block ends before its test block j <= k, so before block k "
        "starts); ties: the earlier job")

# What a job predicts, from what: jobs that differ here answer different questions.
TABLE_KEYS = ("task", "data.kind", "data.path", "data.generator", "data.target", "data.label",
              "data.target_kind", "data.dead_zone", "data.barrier", "data.horizon", "data.output_steps",
              "data.time_col", "data.group_col")


@dataclass
class WalkForwardJob:
    """One finished walk-forward job of a sweep, as its folder records it."""

    name: str
    folds: tuple            # (test_start, test_end) per fold
    table: dict             # TABLE_KEYS -> the job's value
    monitor: str
    mode: str               # min | max
    scores: list[float]     # each fold's best monitored validation value
    pooled: dict            # its pooled test result (metrics.json "pooled")
    folder: Path
    seed: int = 0
    group_col: str | None = None
    task: str = "classification"
    blocks: list = field(default_factory=list)  # metrics.json "folds" rows


def selection_scores(scores: np.ndarray) -> np.ndarray:
    """``known[j, k]``: job j's mean of ``scores[j, 0..k]`` (jobs x folds, each fold's best
    monitored validation value): what job j had shown before test block k started."""
    scores = np.asarray(scores, np.float64)
    return np.array([[float(np.mean(row[:k + 1])) for k in range(scores.shape[1])] for row in scores])


def block_choices(scores: np.ndarray, mode: str) -> list[int]:
    """For each test block k, the job (row of ``scores``) best on folds 0..k in the direction
    ``mode`` (min | max); the earlier job on a tie, a job with a non-finite value never before
    one with a finite value."""
    known = selection_scores(scores) * (-1.0 if mode == "max" else 1.0)
    known = np.where(np.isfinite(known), known, np.inf)
    return [int(np.argmin(known[:, k])) for k in range(known.shape[1])]  # argmin: the first of ties


def nested_frame(frames: dict[int, pd.DataFrame], choices: Sequence[int]) -> pd.DataFrame:
    """Block k's test windows from job ``choices[k]``'s pooled predictions (``frames``: job ->
    its frame with a ``fold`` column), every block once, with the columns all chosen frames have
    (a baseline one job left out is left out of the comparison)."""
    parts = [frames[job][frames[job]["fold"] == k] for k, job in enumerate(choices)]
    shared = set.intersection(*(set(p.columns) for p in parts))
    return pd.concat([p[[c for c in parts[0].columns if c in shared]] for p in parts], ignore_index=True)


def agreeing_jobs(jobs: list[WalkForwardJob]) -> tuple[list[WalkForwardJob], dict[str, str]]:
    """The jobs that share the majority's folds, table and monitor (the earlier job's on a tie
    in size) and, for each other job, why it is left out."""
    def key(job):
        return job.folds, json.dumps(job.table, sort_keys=True, default=str), job.monitor, job.mode

    majority = Counter(key(j) for j in jobs).most_common(1)[0][0]  # ties: first seen (stable sort)
    reference = next(j for j in jobs if key(j) == majority)
    kept, left_out = [], {}
    for job in jobs:
        if key(job) == majority:
            kept.append(job)
            continue
        if job.folds != reference.folds:
            left_out[job.name] = (f"its folds differ ({len(job.folds)} test blocks from {job.folds[0][0]}, "
                                  f"the others' {len(reference.folds)} from {reference.folds[0][0]})")
        elif job.table != reference.table:
            keys = [k for k in TABLE_KEYS if job.table.get(k) != reference.table.get(k)]
            left_out[job.name] = f"it predicts another table or label ({', '.join(keys)} differ)"
        else:
            left_out[job.name] = (f"it monitors {job.monitor} ({job.mode}), the others "
                                  f"{reference.monitor} ({reference.mode})")
    return kept, left_out


def nested_result(jobs: list[WalkForwardJob], star: str | None = None) -> dict | None:
    """The search's out-of-sample result over the agreeing ``jobs`` (``block_choices``), with the
    job ``star`` (the sweep's ★; else the agreeing jobs' best on every fold) as selected in-sample;
    ``None`` for fewer than two walk-forward jobs, only ``left_out`` and ``skipped`` when fewer than
    two agree."""
    if len(jobs) < 2:
        return None
    kept, left_out = agreeing_jobs(jobs)
    if len(kept) < 2:
        return {"skipped": "fewer than two jobs share their folds, table and monitor", "left_out": left_out}
    scores = np.array([j.scores for j in kept])
    choices = block_choices(scores, kept[0].mode)
    frames = {i: utc_times(pd.read_parquet(kept[i].folder / "predictions.parquet")) for i in set(choices)}
    first = kept[0]
    pooled = pooled_skill(first.task, nested_frame(frames, choices), first.group_col, first.seed)
    known = selection_scores(scores)
    blocks = [{"block": k, "test_start": start, "test_end": end, "job": kept[j].name,
               f"selection_{first.monitor}": float(known[j, k]), "windows": kept[j].blocks[k]["windows_test"],
               pooled["metric"]: kept[j].blocks[k].get(pooled["metric"])}
              for k, (j, (start, end)) in enumerate(zip(choices, first.folds, strict=True))]
    chosen = next((j for j in kept if j.name == star), kept[choices[-1]])  # the ★ left out: these jobs' best
    in_sample = {k: chosen.pooled[k] for k in ("metric", "value", "interval", "best_baseline", "skill",
                                               "beats_best_baseline")}
    return {**pooled, "rule": RULE, "monitor": first.monitor, "mode": first.mode, "blocks": blocks,
            "jobs": [j.name for j in kept], "left_out": left_out,
            "selected_in_sample": {"job": chosen.name, "star": chosen.name == star, **in_sample}}


def load_job(folder: Path) -> WalkForwardJob | None:
    """A sweep job folder as a ``WalkForwardJob``; ``None`` unless it holds a finished
    walk-forward run."""
    metrics_file, config_file = folder / "metrics.json", folder / ".hydra" / "config.yaml"
    if not (metrics_file.exists() and config_file.exists()):
        return None
    metrics = json.loads(metrics_file.read_text())
    if metrics.get("eval") != "walk_forward":
        return None
    config = yaml.safe_load(config_file.read_text())
    monitor = metrics["monitor"]
    scores = []
    for row in metrics["folds"]:
        fold = json.loads((folder / f"fold_{row['fold']:02d}" / "metrics.json").read_text())
        scores.append(float(fold["best_val"].get(monitor, float("nan"))))
    table = {key: _get(config, key) for key in TABLE_KEYS}
    if table["data.kind"] != "parquet":
        table["data.path"] = None  # the built-in table is written into each job's own folder
    return WalkForwardJob(folder.name, tuple((r["test_start"], r["test_end"]) for r in metrics["folds"]),
                          table, monitor, metrics.get("mode", "min"), scores, metrics["pooled"], folder,
                          int(config.get("seed", 0)), config["data"].get("group_col"), metrics["task"],
                          metrics["folds"])


def _get(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def nested_summary(sweep_dir: Path, star: str | None = None) -> dict | None:
    """The nested result of the walk-forward jobs in ``sweep_dir`` (job folders in sweep order),
    saved as ``nested.csv`` (one row per test block: the job chosen, its selection score and its
    result on the block) and under ``"nested"`` in ``summary.json``; ``None`` when the sweep has
    fewer than two walk-forward jobs."""
    folders = sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir()), key=_job_number)
    jobs = [job for job in map(load_job, folders) if job is not None]
    result = nested_result(jobs, star)
    if result is None:
        return None
    if "blocks" in result:
        write_csv(Path(sweep_dir) / "nested.csv", pd.DataFrame(result["blocks"]))
    merge_into_json(Path(sweep_dir) / "summary.json", {"nested": result})
    return result




def nested_table_rows(nested: dict) -> list[dict]:
    """The sweep table's rows side by side: the ★ job's pooled result, selected in-sample, and
    the nested out-of-sample result with the job chosen for each block."""
    def row(job: str, note: str, result: dict) -> dict:
        low, high = result["interval"]
        return {"job": job, "overrides": note, result["metric"]: result["value"],
                "interval": f"{low:.3g}–{high:.3g}", "skill": result["skill"],
                "beats_baselines": result["beats_best_baseline"]}

    star = nested["selected_in_sample"]
    chosen = " ".join(str(b["job"]) for b in nested["blocks"])
    note = "" if star.get("star", True) else " (the best of these jobs; the ★ job is left out)"
    return [row(_selected(star), f"selected in-sample{note}", star),
            row("nested", f"out-of-sample; jobs by block: {chosen}", nested)]


def nested_lines(nested: dict | None) -> list[str]:
    """The lines printed under the sweep table: which number to trust, and the jobs left out."""
    if nested is None:
        return []
    lines = [f"job {name} left out of the nested result: {why}" for name, why in nested["left_out"].items()]
    if "skipped" in nested:
        return [*lines, f"nested out-of-sample result: skipped, {nested['skipped']}"]
    low, high = nested["interval"]
    star, skill = nested["selected_in_sample"], nested["skill"]
    return [*lines, f"nested out-of-sample {nested['metric']}: {nested['value']:.4g} ({low:.3g}–{high:.3g}), "
            f"skill vs {nested['best_baseline']} {'n/a' if skill is None else f'{skill:.3g}'}: "
            "what this search would have got "
            f"(each test block scored by the job best before it); job {_selected(star)} "
            f"{star['value']:.4g} was selected in-sample. Per block: nested.csv"]


def _selected(star: dict) -> str:
    """The in-sample job's name, with ★ only when it is the sweep's ★ (not when that job was left
    out of the nested comparison and these jobs' best stands in for it)."""
    return f"{star['job']} ★" if star.get("star", True) else str(star["job"])


def _job_number(path: Path):
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)
