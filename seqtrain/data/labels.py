"""Labels built from the target inside seqtrain (``data.label``), so that no hand-shifted column
ever carries the future into the inputs.

The label of row ``r`` is the target's move over the ``h = data.horizon`` rows ending at ``r``:
from row ``r-h`` to row ``r`` of the same series. The window ending at row ``t`` is labelled at
row ``t+h``, so its label is the move from ``t`` (its last input row) to ``t+h``. Only rows ``<=
t+h`` are read, and the inputs stay rows ``<= t``: the target's own history, when an input, is
its past values, never the move.

- ``value``: the target itself (no move);
- ``return`` / ``log_return``: the move as a simple or log return (regression);
- ``direction``: ``up`` when the return exceeds ``+dead_zone``, ``down`` below ``-dead_zone``,
  ``flat`` between, bounds included (classification). With ``dead_zone=0`` a strictly positive
  move is ``up``, a strictly negative one ``down`` and a move of exactly zero (an unchanged
  price, common on tick-rounded bars) ``flat``: never counted as a fall. The class list is fit on
  training rows like every statistic, so ``flat`` is a class only when some training move is
  flat; a validation or test move of a class training never saw is refused in training, and has
  no truth (``y_true`` missing) when predicting a new table.

``data.target_kind``: ``price`` (returns from the ratio of the two prices) or ``return`` (the
target holds per-row simple returns, compounded over the ``h`` rows). A dead zone written as
``q0.33`` is that quantile of the absolute training moves, fit on training rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqtrain.errors import SeqtrainError

LABELS = ("value", "direction", "return", "log_return")
TARGET_KINDS = ("price", "return")


@dataclass(frozen=True)
class LabelSpec:
    """``data.label``, ``data.target_kind`` and ``data.dead_zone``, read once and checked."""

    kind: str = "value"
    target_kind: str = "price"
    dead_zone: float | str = 0.0  # a number in return units, or "qX" (a quantile, fit on training rows)
    horizon: int = 1

    @classmethod
    def from_config(cls, data, task: str) -> LabelSpec:
        spec = cls(str(data.get("label", "value")), str(data.get("target_kind", "price")),
                   data.get("dead_zone", 0.0), int(data.horizon))
        spec.check(task)
        return spec

    @property
    def builds(self) -> bool:
        """Whether labels are built from the target's moves (anything but ``value``)."""
        return self.kind != "value"

    def check(self, task: str) -> None:
        if self.kind not in LABELS:
            raise SeqtrainError(f"data.label: {self.kind!r}; choose one of {', '.join(LABELS)}")
        if self.target_kind not in TARGET_KINDS:
            raise SeqtrainError(f"data.target_kind: {self.target_kind!r}; choose price or return")
        if not self.builds:
            return
        if self.horizon < 1:
            raise SeqtrainError(f"data.label={self.kind}: the move to t+h needs data.horizon >= 1")
        wanted = "classification" if self.kind == "direction" else "regression"
        if task != wanted:
            raise SeqtrainError(f"data.label={self.kind} is a {wanted} label; set task={wanted}")
        quantile = self.quantile
        if quantile is None:
            if not isinstance(self.dead_zone, (int, float)) or isinstance(self.dead_zone, bool) \
                    or self.dead_zone < 0:
                raise SeqtrainError(f"data.dead_zone: {self.dead_zone!r}; a return >= 0 (e.g. 0.0005) "
                                    "or a quantile of training moves (e.g. q0.33)")
        elif not 0 <= quantile < 1:
            raise SeqtrainError(f"data.dead_zone: {self.dead_zone!r}; the quantile must be in [0, 1)")

    @property
    def quantile(self) -> float | None:
        """The quantile of ``dead_zone='qX'``, or None for a fixed dead zone."""
        text = str(self.dead_zone)
        if not text.startswith("q"):
            return None
        try:
            return float(text[1:])
        except ValueError:
            raise SeqtrainError(f"data.dead_zone: {self.dead_zone!r}; write a quantile as e.g. q0.33"
                                ) from None


def check_levels(values: np.ndarray, target_kind: str, target: str, file_rows: np.ndarray) -> None:
    """Prices must be positive and returns above -100% for a move to exist: one line naming the
    first row that is not."""
    values = np.asarray(values, np.float64)
    bad = values <= (0 if target_kind == "price" else -1)
    if bad.any():
        row = int(file_rows[np.flatnonzero(bad)[0]])
        what = "prices must be > 0" if target_kind == "price" else "returns must be > -1"
        fix = ("if it holds returns, set data.target_kind=return" if target_kind == "price"
               else "check the column")
        raise SeqtrainError(f"data.target: {target!r} has {int(bad.sum())} value(s) that cannot make a move "
                            f"(first at row {row}: {values[bad][0]:g}; {what}); {fix}")


def moves(values: np.ndarray, bounds: np.ndarray, horizon: int, target_kind: str) -> np.ndarray:
    """Log return over the ``horizon`` rows ending at each row, within each series (``bounds``:
    where each starts); NaN for the first ``horizon`` rows of a series."""
    values = np.asarray(values, np.float64)
    if target_kind == "price":
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.log(values)
    else:  # per-row simple returns, compounded: the log price up to a constant
        step = np.log1p(values)
        finite = np.isfinite(step)
        level = np.cumsum(np.where(finite, step, 0.0)) + np.where(finite, 0.0, np.nan)
    out = np.full(len(values), np.nan)
    start_of_row = np.repeat(bounds[:-1], np.diff(bounds))
    rows = np.arange(len(values))
    has = rows - horizon >= start_of_row
    out[has] = level[rows[has]] - level[rows[has] - horizon]
    return out


def fit_dead_zone(spec: LabelSpec, train_moves: np.ndarray) -> float:
    """The dead zone in simple-return units: as given, or the quantile of training rows' moves."""
    if spec.quantile is None:
        return float(spec.dead_zone)
    finite = np.abs(np.expm1(train_moves[np.isfinite(train_moves)]))
    if len(finite) == 0:
        raise SeqtrainError("data.dead_zone: no training move to fit its quantile on")
    return float(np.quantile(finite, spec.quantile))


def labels_from_moves(kind: str, log_moves: np.ndarray, dead_zone: float) -> np.ndarray:
    """The label of each row from its move: returns (float, NaN where undefined), or directions
    (object: "down"/"flat"/"up", None where undefined; a zero move is flat whatever the dead zone)."""
    if kind == "log_return":
        return log_moves
    simple = np.expm1(log_moves)
    if kind == "return":
        return simple
    out = np.full(len(simple), None, dtype=object)
    defined = np.isfinite(simple)
    up = defined & (simple > dead_zone)
    down = defined & (simple < -dead_zone)
    out[up], out[down] = "up", "down"
    out[defined & ~up & ~down] = "flat"  # within the dead zone, or no move at all
    return out


class MoveStream:
    """``moves`` over a stream of chunks (rows of a series in order across chunks, series mixed
    within a chunk): keeps the last ``horizon`` target values of each series."""

    def __init__(self, horizon: int, target_kind: str):
        self.horizon, self.target_kind = horizon, target_kind
        self.tails: dict[int, np.ndarray] = {}

    def moves(self, codes: np.ndarray, values: np.ndarray) -> np.ndarray:
        order = np.argsort(codes, kind="stable")
        sorted_codes, sorted_values = codes[order], np.asarray(values, np.float64)[order]
        out_sorted = np.empty(len(codes))
        edges = np.flatnonzero(np.diff(sorted_codes)) + 1
        for start, stop in zip(np.r_[0, edges], np.r_[edges, len(codes)], strict=True):
            code = int(sorted_codes[start])
            tail = self.tails.get(code, np.empty(0))
            joined = np.concatenate([tail, sorted_values[start:stop]])
            found = moves(joined, np.array([0, len(joined)]), self.horizon, self.target_kind)
            out_sorted[start:stop] = found[len(tail):]
            self.tails[code] = joined[-self.horizon:]
        out = np.empty(len(codes))
        out[order] = out_sorted
        return out
