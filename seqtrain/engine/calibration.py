"""Probabilities that mean what they say, and forecast intervals that hold their coverage.

Both are fit after training on the validation windows' predictions of the best checkpoint
(never on test rows), saved with the run as ``calibration.json`` and applied by the module's
readout, so test, ``seqtrain predict``, the API and exports give the same numbers.

- **Temperature scaling** (Guo et al. 2017, ``calibrate=temperature``): one ``T > 0`` that
  minimises the validation windows' negative log-likelihood of ``softmax(logits / T)``. It
  never changes the predicted class (nor a binary AUROC), only how sure the model says it is.
- **Split conformal intervals** (Vovk et al.; Angelopoulos and Bates 2021), per output step,
  the validation residuals pooled over series: a point model's band is ``pred ± q``, ``q`` the
  ``ceil((n+1)·c)``-th smallest of the ``n`` absolute residuals ``|y - pred|`` for coverage
  ``c``; a quantile model's is conformalised quantile regression (CQR, Romano et al. 2019) on
  its outermost quantiles ``[q_lo - q, q_hi + q]``, ``q`` the same order statistic of
  ``max(q_lo - y, y - q_hi)`` (negative where the model's band was too wide). On windows
  exchangeable with the validation ones, a band covers the truth with probability at least ``c``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seqtrain.errors import SeqtrainError
from seqtrain.files import write_json

CALIBRATIONS = ("none", "temperature")
SIZINGS = ("sign", "probability")
ECE_BINS = 15
TEMPERATURE_RANGE = (1e-2, 1e2)  # searched on log T; a fit at an end says the logits carry no signal


def check_settings(task: str, calibrate, coverage, sizing, sizes_by_probability: bool = True) -> None:
    """``calibrate``, ``eval.coverage`` and ``eval.sizing``, before any data is read
    (``sizes_by_probability``: whether the labels give a trading view with p(up) and p(down))."""
    if calibrate not in CALIBRATIONS:
        raise SeqtrainError(f"calibrate: {calibrate!r}; choose none or temperature")
    if calibrate == "temperature" and task != "classification":
        raise SeqtrainError("calibrate=temperature: scales class probabilities, for task=classification "
                            "(regression gets conformal intervals from eval.coverage); set calibrate=none")
    levels = list(coverage) if isinstance(coverage, Sequence) and not isinstance(coverage, str) else None
    names = {level_name(c) for c in levels or [] if _is_share(c)}  # distinct as lo_/hi_ columns too
    if coverage is not None and (levels is None or len(names) != len(levels)):
        raise SeqtrainError(f"eval.coverage: {coverage!r}; a list of distinct coverage levels in (0, 1), "
                            "e.g. [0.8, 0.95] (one level: [0.9]), or [] for no intervals")
    if sizing not in SIZINGS:
        raise SeqtrainError(f"eval.sizing: {sizing!r}; choose sign (+1/-1/0 from the call) or probability "
                            "(p(up) - p(down))")
    if sizing == "probability" and not (task == "classification" and sizes_by_probability):
        raise SeqtrainError("eval.sizing=probability: sizes the trading view's holds by p(up) - p(down), "
                            "which needs task=classification with data.label=direction or triple_barrier "
                            "(a meta-label's 0/1 has no down); set eval.sizing=sign")


def _is_share(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value < 1


def level_name(level: float) -> str:
    """``0.8`` -> ``80``, ``0.975`` -> ``97.5``: the suffix of its ``lo_``/``hi_`` columns."""
    return f"{level * 100:.6g}"


# -- probabilities ---------------------------------------------------------------------------


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over windows of the sum over classes of ``(p - onehot)²`` (0 perfect; for two
    classes twice the one-probability Brier score)."""
    probs = np.asarray(probs, np.float64)
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Top-label confidence (the highest probability) against accuracy (whether that class is
    the label), in ``bins`` equal-width bins ``(i/bins, (i+1)/bins]``: per bin the windows, their
    mean confidence and their accuracy (NaN in an empty bin)."""
    probs = np.asarray(probs, np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, bins) / count
        accuracy = np.bincount(index, correct, bins) / count
    return {"count": count, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """``Σ_b (n_b / N) |accuracy_b - confidence_b|`` over ``reliability``'s bins (0: the model's
    confidence is its hit rate)."""
    table = reliability(probs, labels, bins)
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float((table["count"][filled] * gaps).sum() / table["count"].sum())


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    z = np.asarray(logits, np.float64) / temperature
    top = z.max(axis=1)
    log_total = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    return float((log_total - z[np.arange(len(z)), labels]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, tolerance: float = 1e-7) -> float:
    """The ``T`` in ``TEMPERATURE_RANGE`` minimising the mean negative log-likelihood of
    ``softmax(logits / T)``: golden-section search on ``log T`` (the likelihood is convex in
    ``1/T``, so it has one minimum there)."""
    ratio = (math.sqrt(5) - 1) / 2
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    loss = lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t))  # noqa: E731
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    while high - low > tolerance:
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return math.exp((low + high) / 2)


def probability_scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    return {"brier": brier_score(probs, labels), "ece": expected_calibration_error(probs, labels)}


def labelled_probabilities(frame, classes: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``prob_<class>`` columns of a predictions frame's rows whose label is one of
    ``classes``, those labels as class ids, and which rows they are."""
    truth = frame["y_true"] if "y_true" in frame else pd.Series([None] * len(frame), dtype=object)
    ids = truth.astype(object).map({c: i for i, c in enumerate(classes)})
    labels = ids.fillna(-1).to_numpy(np.int64)
    rows = labels >= 0
    return frame[[f"prob_{c}" for c in classes]].to_numpy(np.float64)[rows], labels[rows], rows


def probability_report(frame, classes: list, before: np.ndarray | None = None,
                       calibration: Calibration | None = None) -> dict | None:
    """Brier score and ECE of the ``prob_<class>`` columns of a predictions frame on its
    labelled rows (and ``before`` of ``before``, the same rows' uncalibrated probabilities);
    None without labelled rows."""
    probs, labels, rows = labelled_probabilities(frame, classes)
    if not len(labels):
        return None
    report = {**probability_scores(probs, labels), "windows": len(labels), "bins": ECE_BINS,
              "brier_is": "mean over windows of the sum over classes of (p - onehot)^2",
              "ece_is": f"top-label confidence, {ECE_BINS} equal-width bins, weighted by windows",
              "method": calibration.method if calibration else "none"}
    if calibration is not None and calibration.method == "temperature":
        report.update(temperature=calibration.temperature, validation_windows=calibration.validation_windows,
                      validation_nll=calibration.validation_nll)
        if before is not None:
            report["before"] = probability_scores(np.asarray(before)[rows], labels)
    return report


# -- intervals -------------------------------------------------------------------------------


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ``ceil((n+1)·coverage)``-th smallest of the ``n`` finite ``scores`` (the split
    conformal quantile, ``ceil((n+1)(1-α))/n`` of them); ``inf`` when that rank exceeds ``n``
    (too few validation windows for the level)."""
    scores = np.sort(np.asarray(scores, np.float64)[np.isfinite(scores)])
    n = len(scores)
    rank = math.ceil((n + 1) * coverage - 1e-9)  # the tolerance keeps an exact product exact
    return float(scores[rank - 1]) if 1 <= rank <= n else math.inf


def conformity_scores(truth: np.ndarray, pred: np.ndarray, quantiles: np.ndarray | None) -> np.ndarray:
    """``(n, k)`` scores: ``|y - pred|``, or with quantiles ``(n, k, Q)`` (sorted ascending)
    ``max(q_lo - y, y - q_hi)`` on the outermost pair (CQR)."""
    if quantiles is None:
        return np.abs(truth - pred)
    return np.maximum(quantiles[..., 0] - truth, truth - quantiles[..., -1])


# -- what a run saves ------------------------------------------------------------------------


@dataclass
class Calibration:
    """What was fit on the validation windows: a temperature, or per coverage level one margin
    per output step (``method``: temperature, split_conformal or cqr)."""

    method: str
    validation_windows: int
    temperature: float = 1.0
    margins: dict[str, list[float]] = field(default_factory=dict)  # level name -> per step
    levels: dict[str, float] = field(default_factory=dict)  # level name -> coverage
    checkpoint: str | None = None  # the weights' file it was fit for
    validation_nll: list[float] | None = None  # temperature: before, after

    @classmethod
    def temperature_from(cls, logits: np.ndarray, labels: np.ndarray, checkpoint: str | None) -> Calibration:
        temperature = fit_temperature(logits, labels)
        nll = [negative_log_likelihood(logits, labels), negative_log_likelihood(logits, labels, temperature)]
        return cls("temperature", len(labels), temperature=temperature, checkpoint=checkpoint,
                   validation_nll=nll)

    @classmethod
    def conformal_from(cls, truth: np.ndarray, pred: np.ndarray, quantiles: np.ndarray | None,
                       coverage: list[float], checkpoint: str | None) -> Calibration:
        """Margins per level and step from ``truth`` and ``pred`` ``(n, k)`` in target units
        (and ``quantiles`` ``(n, k, Q)``), every series' windows pooled."""
        scores = conformity_scores(truth, pred, quantiles)
        names = {level_name(c): float(c) for c in sorted(coverage)}
        margins = {name: [conformal_quantile(scores[:, j], c) for j in range(scores.shape[1])]
                   for name, c in names.items()}
        return cls("cqr" if quantiles is not None else "split_conformal", len(truth), margins=margins,
                   levels=names, checkpoint=checkpoint)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits / self.temperature).softmax(-1)

    def bands(self, pred: torch.Tensor, quantiles: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``lo_<level>`` / ``hi_<level>`` ``(B, k)`` for point forecasts ``pred`` ``(B, k)`` (CQR:
        around ``quantiles`` ``(B, k, Q)``'s outermost pair)."""
        outer = (pred, pred) if self.method == "split_conformal" else (quantiles[..., 0], quantiles[..., -1])
        out = {}
        for name, margin in self.margins.items():
            q = torch.tensor(margin, dtype=pred.dtype)
            out[f"lo_{name}"], out[f"hi_{name}"] = outer[0] - q, outer[1] + q
        return out

    def to_dict(self) -> dict:
        return {"method": self.method, "validation_windows": self.validation_windows,
                "temperature": self.temperature,
                "margins": {k: [m if math.isfinite(m) else None for m in v] for k, v in self.margins.items()},
                "levels": self.levels, "checkpoint": self.checkpoint, "validation_nll": self.validation_nll}

    @classmethod
    def from_dict(cls, saved: dict) -> Calibration:
        margins = {k: [math.inf if m is None else float(m) for m in v] for k, v in saved["margins"].items()}
        return cls(saved["method"], int(saved["validation_windows"]), float(saved["temperature"]), margins,
                   {k: float(v) for k, v in saved["levels"].items()}, saved.get("checkpoint"),
                   saved.get("validation_nll"))

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict(), default=None)

    @classmethod
    def load(cls, path: Path) -> Calibration | None:
        """The run's calibration (None where the run has none)."""
        if not path.exists():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            raise SeqtrainError(f"run: {path} is not a calibration seqtrain wrote; train the run "
                                "again") from None


def interval_report(frame, calibration: Calibration | None) -> dict | None:
    """Per coverage level, on the labelled rows (windows × steps) of a predictions frame with
    ``lo_``/``hi_`` columns: the share whose truth lies in its band, beside the nominal level,
    and the band's mean width, overall and per step; None without such columns."""
    if calibration is None or not calibration.levels or "y_true" not in frame:
        return None
    truth = frame["y_true"].to_numpy(np.float64)
    known = np.isfinite(truth)
    report = {}
    for name, nominal in calibration.levels.items():
        lo, hi = frame[f"lo_{name}"].to_numpy(np.float64), frame[f"hi_{name}"].to_numpy(np.float64)
        inside = (truth >= lo) & (truth <= hi)
        by_step = frame.assign(inside=inside, width=hi - lo)[known].groupby("step")
        report[name] = {"nominal": nominal, "coverage": _mean(inside[known]),
                        "mean_width": _mean((hi - lo)[known]),
                        "coverage_by_step": [_mean(v) for v in by_step["inside"].mean()],
                        "mean_width_by_step": [_mean(v) for v in by_step["width"].mean()]}
    return {"method": calibration.method, "residuals_pooled_over": "series", "rows": int(known.sum()),
            "validation_windows": calibration.validation_windows, "levels": report}


def _mean(values) -> float | None:
    value = float(np.mean(values)) if np.size(values) else math.nan
    return value if math.isfinite(value) else None
