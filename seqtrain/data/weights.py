"""Weights for overlapping labels (``data.sample_weight``): López de Prado, *Advances in Financial
Machine Learning* (2018), ch. 4.

The label of the window ending at row ``t`` spans rows ``t+1 .. e`` (``e = t + h + k - 1``, or a
triple-barrier label's touch row). Labels that share rows are not independent draws, so a window
whose label overlaps many others should count less. Over the training windows only:

- the concurrency of row ``j``, ``c_j``, is the number of training labels whose span covers it
  (per series: spans never cross from one series into another);
- a label's average uniqueness is the mean of ``1/c_j`` over its span (1 for a label no other
  overlaps; ``1/h`` on average when every row starts an ``h``-row label);
- with a time decay ``d`` in (0, 1] (``data.sample_weight_decay``; 1: none), the weights fall
  linearly in cumulative uniqueness (AFML 4.5.3, with its ``c = d``), per series in time order:
  ``w = u · (d + (1 - d) · x / x_last)``, ``x`` a label's cumulative uniqueness in its series, so
  the newest label keeps its uniqueness and the oldest about ``d`` of it.

The weights are scaled to a mean of 1 over the training windows and weigh the training loss only;
validation and test windows are scored unweighted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqtrain.errors import SeqtrainError

SAMPLE_WEIGHTS = ("none", "uniqueness")


@dataclass(frozen=True)
class SampleWeightSpec:
    """``data.sample_weight`` and ``data.sample_weight_decay``, read once and checked."""

    kind: str = "none"
    decay: float = 1.0

    @classmethod
    def from_config(cls, data) -> SampleWeightSpec:
        spec = cls(str(data.get("sample_weight", "none")), data.get("sample_weight_decay", 1.0))
        if spec.kind not in SAMPLE_WEIGHTS:
            raise SeqtrainError(f"data.sample_weight: {spec.kind!r}; choose none or uniqueness")
        decay = spec.decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
            raise SeqtrainError(f"data.sample_weight_decay: {decay!r}; the oldest training window's weight "
                                "relative to the newest, in (0, 1] (1: no decay)")
        if spec.active and data.get("horizon", 1) == 0:
            raise SeqtrainError("data.sample_weight=uniqueness: with data.horizon=0 the label column "
                                "looks ahead by itself, so its span is unknown; set data.sample_weight=none")
        return spec

    @property
    def active(self) -> bool:
        return self.kind != "none"


def average_uniqueness(ends: np.ndarray, reach: np.ndarray, n_rows: int) -> np.ndarray:
    """The average uniqueness of each label whose window ends at global row ``ends[i]`` and whose
    span is rows ``ends[i]+1 .. ends[i]+reach[i]``, from the concurrency of those labels alone
    over ``n_rows`` rows grouped by series (a span never leaves its series, so series never mix)."""
    ends, reach = np.asarray(ends, np.int64), np.asarray(reach, np.int64)
    change = np.zeros(n_rows + 1)
    np.add.at(change, ends + 1, 1.0)
    np.add.at(change, ends + reach + 1, -1.0)
    concurrency = np.cumsum(change)[:n_rows]
    inverse = np.divide(1.0, concurrency, out=np.zeros(n_rows), where=concurrency > 0)
    running = np.r_[0.0, np.cumsum(inverse)]  # running[j] = sum of 1/c over rows < j
    return (running[ends + reach + 1] - running[ends + 1]) / reach


def time_decay(uniqueness: np.ndarray, series: np.ndarray, decay: float) -> np.ndarray:
    """AFML 4.5.3's linear decay in cumulative uniqueness, per series, for labels in time order
    within each series (``series``: each label's series code, grouped): ``decay + (1 - decay) ·
    x / x_last``; all 1 when ``decay`` is 1."""
    if decay == 1 or len(uniqueness) == 0:
        return np.ones(len(uniqueness))
    order = np.argsort(series, kind="stable")
    sorted_series, sorted_u = series[order], uniqueness[order]
    total = np.cumsum(sorted_u)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_series)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(sorted_u)]))
    before = np.where(first > 0, total[np.maximum(first - 1, 0)], 0.0)
    cumulative = total - before
    last = np.repeat(cumulative[np.r_[starts[1:], len(sorted_u)] - 1], np.diff(np.r_[starts, len(sorted_u)]))
    out = np.empty(len(uniqueness))
    out[order] = decay + (1 - decay) * cumulative / last
    return out


def training_weights(ends: np.ndarray, reach: np.ndarray, series: np.ndarray, n_rows: int,
                     decay: float) -> tuple[np.ndarray, float]:
    """Loss weights of the training windows ending at ``ends`` (uniqueness times the time
    decay, scaled to mean 1) and their mean average uniqueness."""
    uniqueness = average_uniqueness(ends, reach, n_rows)
    weights = uniqueness * time_decay(uniqueness, series, decay)
    return weights / weights.mean(), float(uniqueness.mean())
