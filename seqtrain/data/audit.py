"""Leakage audit: an input whose value at a window's last row all but decides the label.

Honest inputs predict the future partly; one that predicts it almost perfectly is, in practice,
the future itself (a label or return shifted by hand into the table). On training windows, each
input column's value at the last row ``t`` is scored against the label at ``t + h`` (but the
static columns and series codes of ``data.static`` and ``model.series_embedding``: constant within
a series, they tell series apart and hold no later row):

- classification: the single-column AUROC of each class against the rest (the larger of AUROC
  and 1 - AUROC);
- regression: the single-column AUROC of the move's direction (label above or below the
  target's value at ``t``), and the partial correlation of column and label given the target's
  value at ``t`` (so that a column tracking a persistent level, like the target's own history,
  is not mistaken for a leak, while a shifted copy of the target is caught).

Every statistic here is invariant to the per-column scaling, so scaled inputs can be audited.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from seqtrain.errors import SeqtrainError

log = logging.getLogger("seqtrain")


def _auroc(ranks: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUROC of each column (``ranks``: average ranks, ties shared) for a boolean label."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.full(ranks.shape[1], 0.5)
    return (ranks[positive].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _separation(ranks: np.ndarray, positive: np.ndarray) -> np.ndarray:
    auc = _auroc(ranks, positive)
    return np.maximum(auc, 1 - auc)


def _residual(values: np.ndarray, given: np.ndarray) -> np.ndarray:
    """``values`` (columns) minus their least-squares fit on ``given`` and a constant."""
    design = np.column_stack([np.ones(len(given)), given])
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ coef


def _abs_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|correlation| of each column of ``a`` with the vector ``b`` (0 for a constant)."""
    a = a - a.mean(0)
    b = b - b.mean()
    scale = np.sqrt((a**2).sum(0) * (b**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(np.abs(a.T @ b) / scale)


def leakage_scores(last_rows: np.ndarray, labels: np.ndarray, task: str,
                   label_now: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Each column's score in [0.5, 1] or [0, 1] (higher: closer to deciding the label) and the
    name of the statistic. ``last_rows`` ``(n, F)`` inputs at the windows' last rows; ``labels``
    ``(n,)`` class ids or (first-step) regression labels; ``label_now`` ``(n,)`` the target at the
    last row (regression with a horizon; None when the label is that row's own value)."""
    x = np.asarray(last_rows, np.float64)
    if task == "classification":
        ranks = pd.DataFrame(x).rank().to_numpy()
        classes = np.unique(labels)
        scores = np.max([_separation(ranks, labels == c) for c in classes], axis=0)
        return scores, "AUROC"
    labels = np.asarray(labels, np.float64)
    if label_now is None:
        return _abs_corr(x, labels), "|corr|"
    move = labels - label_now
    moved = move != 0  # ties say nothing about the direction
    direction = _separation(pd.DataFrame(x[moved]).rank().to_numpy(), move[moved] > 0)
    partial = _abs_corr(_residual(x, label_now), _residual(labels[:, None], label_now)[:, 0])
    return np.maximum(direction, partial), "AUROC of the move or partial |corr|"


def audit(last_rows: np.ndarray, labels: np.ndarray, names: list[str], task: str, threshold: float,
          label_now: np.ndarray | None = None, skip: tuple[str, ...] = ()) -> dict:
    """The audit's record for metrics.json: each column's score, and those at or above
    ``threshold`` as ``flagged``."""
    scores, statistic = leakage_scores(last_rows, labels, task, label_now)
    scored = {name: round(float(s), 4) for name, s in zip(names, scores, strict=True) if name not in skip}
    flagged = [name for name, s in scored.items() if s >= threshold]
    return {"statistic": statistic, "threshold": threshold, "windows": int(len(labels)),
            "flagged": flagged, "scores": scored}


def leakage_audit(settings, task: str, data, datamodule) -> dict | None:
    """The run's audit (``settings``: the ``data`` group): every input column scored against the
    label on (up to 20,000) training windows of ``datamodule``; one warning line, or an error with
    ``data.leakage_audit=error``, for those that all but decide it."""
    if settings.leakage_audit == "off":
        return None
    batch = datamodule.last_rows("train", size=20_000)
    classification = task == "classification"
    labels = batch["y"] if classification else batch["y"][:, 0]
    # the target at the last row, which a label at t+h moves from: only a plain target with a
    # horizon (with horizon 0 the label is that row's own value; a return label is already a move)
    plain = not classification and data.state.window.horizon >= 1 and data.state.label == "value"
    label_now = batch["y_last"].numpy() if plain else None
    own_history = (data.target,) if data.target in data.input_names else ()
    static = data.state.static  # constant within each series: no later row in them to leak
    skip = (*own_history, *static.numeric, *static.code_names)
    result = audit(batch["x_last"].float().numpy(), labels.numpy(), data.input_names, task,
                   float(settings.leakage_threshold), label_now, skip=skip)
    if result["flagged"]:
        scores = ", ".join(f"{c!r} {result['scores'][c]:.3f}" for c in result["flagged"])
        message = (f"leakage audit: input column(s) {scores} ({result['statistic']} on training windows, "
                   f">= data.leakage_threshold={result['threshold']}) all but decide the label from "
                   "a window's last row: likely a label or return shifted into the table by hand; "
                   "drop them from data.features (data.leakage_audit=off if they are truly known then)")
        if settings.leakage_audit == "error":
            raise SeqtrainError(message)
        log.warning(message)
    return result
