"""What a case run (``data=cases``) reports beside the model: the classic baselines of
whole-sequence classification, each with its interval, and per-class figures.

- majority: the most frequent class of the training cases;
- nearest_neighbour: 1-nearest-neighbour with Euclidean distance over the training cases, on the
  cases as the models see them (channels scaled on training cases, fed at the run's length:
  left-padded with zeros, truncated or resampled by ``data.length``), the UCR/UEA archives'
  classic reference.

Cases are independent draws, so the intervals resample cases one at a time (no blocks).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from seqtrain.report.baselines import skill_report, window_losses
from seqtrain.report.predictions import concat_records

MAX_DISTANCE_WORK = 2e11  # multiply-adds of the 1-NN search beyond which it is left out, with a note


def nearest_neighbour(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor,
                      chunk: int = 256) -> np.ndarray:
    """The class of each test case's nearest training case by Euclidean distance over all its
    values (``(n, L, F)`` both; the first training case wins a tie)."""
    train = train_x.reshape(len(train_x), -1).double()
    found = [torch.cdist(part.reshape(len(part), -1).double(), train).argmin(1)
             for part in test_x.split(chunk)]
    index = torch.cat(found).numpy() if found else np.zeros(0, np.int64)
    return np.asarray(train_y)[index]


def compare_cases(state, records: list[dict], train: dict, test: dict,
                  seed: int = 0) -> tuple[dict, dict, dict, dict]:
    """``(baseline_test, skill, columns, notes)`` as ``baselines.compare_with_baselines`` gives
    them for windows, for cases: each baseline's test accuracy, the model's skill against the
    best of them with intervals (cases resampled one at a time), each baseline's class per case
    for predictions.parquet. ``train`` / ``test``: every case of the split as the model sees it
    (``SeqDataModule.whole_windows``: ``x``, ``y`` class ids, ``code`` the case code)."""
    truth = concat_records(records, "y")
    codes = concat_records(records, "window")[:, 0]
    predicted = concat_records(records, "probs").argmax(1)
    guesses = {"majority": np.full(len(truth), int(np.argmax(state.class_counts)), np.int64)}
    notes = {}
    x_train, x_test = train["x"], test["x"]
    work = len(x_train) * len(x_test) * x_train[0].numel()
    if work <= MAX_DISTANCE_WORK:
        found = nearest_neighbour(x_train, train["y"], x_test)
        position = np.full(int(max(codes.max(), test["code"].max())) + 1, -1, np.int64)
        position[test["code"]] = np.arange(len(test["code"]))
        guesses["nearest_neighbour"] = found[position[codes]]
    else:
        notes["nearest_neighbour"] = (f"left out: {len(x_train):,} training x {len(x_test):,} test cases of "
                                      f"{x_train[0].numel():,} values is beyond {MAX_DISTANCE_WORK:.0e} "
                                      "multiply-adds")
    losses = {name: window_losses("classification", truth, guess) for name, guess in guesses.items()}
    skill = skill_report("classification", "test_acc", window_losses("classification", truth, predicted),
                         losses, seed, independent=True)
    baseline_test = {f"{name}_acc": float((guess == truth).mean()) for name, guess in guesses.items()}
    baseline_test.update({f"{name}_f1": class_report(truth, guess, None, len(state.classes))["macro_f1"]
                          for name, guess in guesses.items()})
    classes = np.asarray(state.classes, dtype=object)
    columns = {f"baseline_{name}": classes[guess] for name, guess in guesses.items()}
    return baseline_test, skill, columns, notes


def class_report(truth: np.ndarray, predicted: np.ndarray, probs: np.ndarray | None, n_classes: int,
                 names: list | None = None) -> dict:
    """Per class: precision, recall, F1, support and (with ``probs`` ``(n, C)``) one-vs-rest
    AUROC; their macro F1 and the confusion matrix (rows: true class, columns: predicted)."""
    counts = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(counts, (np.asarray(truth), np.asarray(predicted)), 1)
    hits, support, called = np.diag(counts), counts.sum(1), counts.sum(0)
    precision = np.divide(hits, called, out=np.zeros(n_classes), where=called > 0)
    recall = np.divide(hits, support, out=np.zeros(n_classes), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(n_classes), where=both > 0)
    present = support > 0  # a class absent from the truth has no recall: not averaged
    per_class = {}
    for j in range(n_classes):
        auroc = one_vs_rest_auroc(np.asarray(truth) == j, probs[:, j]) if probs is not None else None
        per_class[str(names[j]) if names else str(j)] = {
            "precision": float(precision[j]), "recall": float(recall[j]), "f1": float(f1[j]),
            "support": int(support[j]), **({"auroc": auroc} if probs is not None else {})}
    return {"macro_f1": float(f1[present].mean()) if present.any() else None, "classes": per_class,
            "confusion": counts.tolist()}


def one_vs_rest_auroc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """The AUROC of ``score`` for ``positive`` against the rest (ties count half): the
    Mann-Whitney statistic; None without both kinds."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def case_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The test predictions of cases as one row per case: without the time columns of windows
    (a case is labelled as a whole)."""
    return frame.drop(columns=[c for c in ("time", "window_end", "step") if c in frame.columns])
