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

- ``triple_barrier`` (classification; López de Prado, *Advances in Financial Machine Learning*,
  ch. 3): from the window's end ``t``, a profit-take barrier at ``+profit·σ_t`` and a stop-loss
  at ``-loss·σ_t`` on the log return from ``t``, and a vertical barrier at ``t+h``. ``σ_t`` is
  the exponentially weighted standard deviation of the per-row log returns up to row ``t``
  (rows ``<= t`` only; see ``ewm_volatility``). The class is the barrier touched first: ``up``,
  ``down``, or at the vertical barrier ``flat`` (``vertical=flat``) or the sign of the return
  there (``vertical=sign``; an unchanged price is still ``flat``). A row touches a barrier when
  its return from ``t`` reaches it with that barrier's sign (``>= +profit·σ`` and above zero, or
  ``<= -loss·σ`` and below zero), so a row reaches at most one barrier, even where a zero
  volatility puts both at the entry price: an unchanged price then touches neither. A multiple
  of 0 removes that barrier. The label's end row is the touch row (``t+h`` when none is
  touched): the purge keeps a training window whose end row is in training even when ``t+h``
  is not, and rows after the end row never change the label.
  With ``side`` (meta-labels), a column holding the primary model's side (+1 long, -1 short)
  at ``t``: the barriers apply to that side's trade (its return is ``side ×`` the price's), and
  the label is 1 when the trade reached its profit barrier first, else 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seqtrain.errors import SeqtrainError

LABELS = ("value", "direction", "return", "log_return", "triple_barrier")
TARGET_KINDS = ("price", "return")
VERTICAL = ("flat", "sign")
VOL_SPANS = 5  # the volatility reads 5 spans of returns: older ones weigh under e^-10 of the newest


@dataclass(frozen=True)
class BarrierSpec:
    """``data.barrier``: the barriers of ``data.label=triple_barrier``, in multiples of the
    volatility ``σ_t`` (an EWM std of per-row log returns over ``span`` rows)."""

    profit: float = 1.0
    loss: float = 1.0
    span: int = 20
    vertical: str = "flat"
    side: str | None = None

    @classmethod
    def from_config(cls, barrier) -> BarrierSpec:
        barrier = barrier or {}
        side = barrier.get("side")
        return cls(barrier.get("profit", 1.0), barrier.get("loss", 1.0), barrier.get("span", 20),
                   str(barrier.get("vertical", "flat")), None if side in (None, "") else str(side))

    @property
    def lookback(self) -> int:
        """Per-row returns the volatility at a row reads (that row's and earlier ones)."""
        return VOL_SPANS * self.span

    def check(self) -> None:
        for key in ("profit", "loss"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise SeqtrainError(f"data.barrier.{key}: {value!r}; a multiple of the volatility >= 0 "
                                    "(0: no such barrier)")
        if self.profit == 0 and self.loss == 0 and self.side is None:
            raise SeqtrainError("data.barrier: profit=0 and loss=0 leave only the vertical barrier; "
                                "set one of them > 0, or use data.label=direction")
        if self.side is not None and self.profit == 0:
            raise SeqtrainError("data.barrier.profit: 0 with data.barrier.side: a meta-label asks "
                                "whether the profit barrier was reached; set it > 0")
        if isinstance(self.span, bool) or not isinstance(self.span, int) or self.span < 2:
            raise SeqtrainError(f"data.barrier.span: {self.span!r}; the volatility's EWM span in rows, "
                                "an integer >= 2")
        if self.vertical not in VERTICAL:
            raise SeqtrainError(f"data.barrier.vertical: {self.vertical!r}; choose flat or sign")

    def to_dict(self) -> dict:
        return {"profit": self.profit, "loss": self.loss, "span": self.span, "vertical": self.vertical,
                "side": self.side}


@dataclass(frozen=True)
class LabelSpec:
    """``data.label``, ``data.target_kind`` and ``data.dead_zone``, read once and checked."""

    kind: str = "value"
    target_kind: str = "price"
    dead_zone: float | str = 0.0  # a number in return units, or "qX" (a quantile, fit on training rows)
    horizon: int = 1
    barrier: BarrierSpec | None = None  # data.label=triple_barrier only

    @classmethod
    def from_config(cls, data, task: str) -> LabelSpec:
        kind = str(data.get("label", "value"))
        barrier = BarrierSpec.from_config(data.get("barrier")) if kind == "triple_barrier" else None
        spec = cls(kind, str(data.get("target_kind", "price")), data.get("dead_zone", 0.0),
                   int(data.horizon), barrier)
        spec.check(task)
        if barrier is not None and (int(data.get("seq_length", 3)) < 3 or data.get("pad_short")):
            raise SeqtrainError("data.label=triple_barrier: the volatility at a window's end reads at "
                                "least two of its returns; set data.seq_length >= 3 and "
                                "data.pad_short=false")
        return spec

    @property
    def reads(self) -> int:
        """Rows before a label row that its label reads: none for the target itself, ``h`` for a
        move, ``h`` and the volatility's returns for a triple-barrier label."""
        if not self.builds:
            return 0
        return self.horizon + (self.barrier.lookback if self.barrier else 0)

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
        wanted = "classification" if self.kind in ("direction", "triple_barrier") else "regression"
        if task != wanted:
            raise SeqtrainError(f"data.label={self.kind} is a {wanted} label; set task={wanted}")
        if self.barrier is not None:
            self.barrier.check()
            return
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


def log_levels(values: np.ndarray, target_kind: str) -> np.ndarray:
    """The log price of each row (for per-row returns, their compounded sum: the log price up to
    a constant, which every difference within a series cancels)."""
    values = np.asarray(values, np.float64)
    if target_kind == "price":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(values)
    step = np.log1p(values)
    finite = np.isfinite(step)
    return np.cumsum(np.where(finite, step, 0.0)) + np.where(finite, 0.0, np.nan)


def moves(values: np.ndarray, bounds: np.ndarray, horizon: int, target_kind: str) -> np.ndarray:
    """Log return over the ``horizon`` rows ending at each row, within each series (``bounds``:
    where each starts); NaN for the first ``horizon`` rows of a series."""
    level = log_levels(values, target_kind)
    out = np.full(len(values), np.nan)
    start_of_row = np.repeat(bounds[:-1], np.diff(bounds))
    rows = np.arange(len(values))
    has = rows - horizon >= start_of_row
    out[has] = level[rows[has]] - level[rows[has] - horizon]
    return out


def ewm_volatility(levels: np.ndarray, bounds: np.ndarray, span: int) -> np.ndarray:
    """σ at each row: the exponentially weighted standard deviation of the per-row log returns
    of its series up to that row (the return of row i is ``levels[i] - levels[i-1]``; a series'
    first row has none), with weights ``(1-α)^k`` for the return k rows back, ``α = 2/(span+1)``,
    and pandas' bias correction (``Series.ewm(span).std()``, ``adjust=True``): the same number
    as pandas while a series has at most ``VOL_SPANS·span`` returns. Only the last ``VOL_SPANS·span``
    returns are read (older ones would weigh under e^-10 of the newest), so a streamed chunk
    with that many rows carried computes it exactly as the whole table does. NaN with fewer
    than two returns."""
    levels = np.asarray(levels, np.float64)
    n = len(levels)
    start = np.repeat(bounds[:-1], np.diff(bounds))
    rows = np.arange(n)
    returns = np.full(n, np.nan)
    inner = rows > start
    returns[inner] = levels[inner] - levels[rows[inner] - 1]
    decay = 1.0 - 2.0 / (span + 1)
    total = np.zeros((4, n))  # Σw, Σw², Σw·r, Σw·r²
    for back in range(VOL_SPANS * span):
        source = rows - back
        ok = source > start  # a return of the row's own series
        ok[ok] &= np.isfinite(returns[source[ok]])
        r = np.where(ok, returns[np.maximum(source, 0)], 0.0)
        w = decay ** back * ok
        total += (w, w * w, w * r, w * r * r)
    v1, v2, s1, s2 = total
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / v1
        biased = np.maximum(s2 / v1 - mean * mean, 0.0)
        out = np.sqrt(biased * v1 * v1 / (v1 * v1 - v2))
    out[~(v1 * v1 - v2 > 1e-12 * v1 * v1)] = np.nan  # one return (or none): no spread
    return out


@dataclass
class BuiltLabels:
    """Labels built at each row from the target (``data.label`` other than ``value``):
    ``values`` (float returns, or object classes with None where undefined), the log ``moves``
    they come from (a move label's; a triple-barrier label's: its trade's log return from the
    window's end to its end row) and, for triple-barrier labels, ``touch``: rows from the
    window's end to the label's end row (0 where undefined)."""

    values: np.ndarray
    moves: np.ndarray
    touch: np.ndarray | None = None


def barrier_labels(levels: np.ndarray, bounds: np.ndarray, horizon: int, barrier: BarrierSpec,
                   side: np.ndarray | None = None) -> BuiltLabels:
    """Triple-barrier labels (see the module docstring) at each label row ``r = t + horizon`` of
    the window ending at ``t``, from the log price ``levels`` of rows grouped by series
    (``bounds``): reads rows ``t - VOL_SPANS·span .. t`` for the volatility and ``t+1 .. t+h``
    for the path, stopping at the first touch. ``side`` (meta-labels): each row's primary side,
    +1 or -1, read at ``t``. Undefined (None, touch 0) without two returns before ``t``, or
    without a side of ±1 there."""
    levels = np.asarray(levels, np.float64)
    n = len(levels)
    start = np.repeat(bounds[:-1], np.diff(bounds))
    ends = np.arange(n) - horizon
    label_rows = np.flatnonzero(ends >= start)
    t = ends[label_rows]
    sigma = ewm_volatility(levels, bounds, barrier.span)[t]
    sign = np.ones(len(t)) if side is None else np.asarray(side, np.float64)[t]
    defined = np.isfinite(sigma) & np.isfinite(levels[t]) & ((sign == 1) | (sign == -1))
    upper = np.where(barrier.profit > 0, barrier.profit * sigma, np.inf)
    lower = np.where(barrier.loss > 0, -barrier.loss * sigma, -np.inf)
    touch = np.zeros(len(t), np.int64)
    hit = np.zeros(len(t), np.int64)  # +1 profit (up), -1 loss (down), 0 the vertical barrier
    for step in range(1, horizon + 1):
        ret = sign * (levels[t + step] - levels[t])
        up, down = (ret >= upper) & (ret > 0), (ret <= lower) & (ret < 0)
        first = (touch == 0) & (up | down)
        touch[first], hit[first] = step, np.where(up[first], 1, -1)
    touch[touch == 0] = horizon
    move = sign * (levels[t + touch] - levels[t])
    values = np.full(n, None, dtype=object)
    if side is not None:
        classes = np.where(hit == 1, 1, 0).astype(object)
    else:
        if barrier.vertical == "sign":
            hit = np.where(hit == 0, np.sign(move).astype(np.int64), hit)
        classes = np.array(["down", "flat", "up"], dtype=object)[hit + 1]
    values[label_rows[defined]] = classes[defined]
    moves_out, touch_out = np.full(n, np.nan), np.zeros(n, np.int64)
    moves_out[label_rows[defined]] = move[defined]
    touch_out[label_rows[defined]] = touch[defined]
    return BuiltLabels(values, moves_out, touch_out)


def check_side(values: np.ndarray, column: str, file_rows: np.ndarray) -> None:
    """A meta-label's side column holds +1 or -1 on every row: one line naming the first row
    that does not."""
    values = np.asarray(values, np.float64)
    bad = (values != 1) & (values != -1)
    if bad.any():
        row = int(file_rows[np.flatnonzero(bad)[0]])
        raise SeqtrainError(f"data.barrier.side: column {column!r} has {int(bad.sum())} value(s) other "
                            f"than +1/-1 (first at row {row}: {values[bad][0]:g}); give every row the "
                            "primary model's side")


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


class BarrierStream:
    """``barrier_labels`` over a stream of chunks (rows of a series in order across chunks,
    series mixed within a chunk): keeps the last ``horizon + VOL_SPANS·span`` target values (and
    sides) of each series, all that a label row reads before it."""

    def __init__(self, horizon: int, target_kind: str, barrier: BarrierSpec):
        self.horizon, self.target_kind, self.barrier = horizon, target_kind, barrier
        self.reach = horizon + barrier.lookback
        self.tails: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def labels(self, codes: np.ndarray, values: np.ndarray, side: np.ndarray | None = None) -> BuiltLabels:
        order = np.argsort(codes, kind="stable")
        sorted_codes, sorted_values = codes[order], np.asarray(values, np.float64)[order]
        sorted_side = None if side is None else np.asarray(side, np.float64)[order]
        out = BuiltLabels(np.full(len(codes), None, dtype=object), np.full(len(codes), np.nan),
                          np.zeros(len(codes), np.int64))
        edges = np.flatnonzero(np.diff(sorted_codes)) + 1
        for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(codes)], strict=True):
            code = int(sorted_codes[lo])
            tail, tail_side = self.tails.get(code, (np.empty(0), None if side is None else np.empty(0)))
            joined = np.concatenate([tail, sorted_values[lo:hi]])
            joined_side = None if side is None else np.concatenate([tail_side, sorted_side[lo:hi]])
            built = barrier_labels(log_levels(joined, self.target_kind), np.array([0, len(joined)]),
                                   self.horizon, self.barrier, joined_side)
            rows = order[lo:hi]
            out.values[rows], out.moves[rows], out.touch[rows] = (
                built.values[len(tail):], built.moves[len(tail):], built.touch[len(tail):])
            self.tails[code] = (joined[-self.reach:], None if side is None else joined_side[-self.reach:])
        return out
