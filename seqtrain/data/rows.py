"""Rows as tensors, and the windows cut from them by index arithmetic: one contiguous tensor
of inputs, an ``unfold`` view, one vectorised gather per batch. Shared by the in-memory dataset
and the streamed one, which cuts its chunks with the very same rule.
"""

from __future__ import annotations

import copy

import numpy as np
import torch


def time_as_number(times: np.ndarray) -> np.ndarray:
    """Times as numbers a tensor can hold: timestamps as int64 nanoseconds, numbers unchanged."""
    if np.issubdtype(times.dtype, np.datetime64):
        return times.astype("datetime64[ns]").view(np.int64)
    return times.astype(np.float64 if times.dtype.kind == "f" else np.int64)


def time_from_number(values: np.ndarray, time_dtype: str) -> np.ndarray:
    """Inverse of ``time_as_number`` for a time column of dtype ``time_dtype``."""
    if time_dtype.startswith("datetime64"):
        return values.astype(np.int64).view("datetime64[ns]")
    return values


def known_label_lag(horizon: int, embargo: int) -> int | None:
    """Rows back from a window's end to the latest row whose label is known there: 0 with a
    horizon (the label of row t is the target, or the move, up to t); with ``horizon=0`` the
    label column looks ahead, and ``data.embargo=e`` says by how many rows, so the latest known
    label is e rows back; None with neither (no label is known at the window's end)."""
    if horizon >= 1:
        return 0
    return embargo if embargo >= 1 else None


def season_offsets(horizon: int, output_steps: int, season: int, lag: int) -> np.ndarray:
    """Rows from a window's end to each label row's value whole seasons earlier: the fewest
    whole seasons (at least one) that put it at or before the latest known label (``lag``
    rows back, see ``known_label_lag``)."""
    offsets = np.arange(horizon, horizon + output_steps)
    seasons = np.maximum((offsets + lag + season - 1) // season, 1)
    return offsets - season * seasons


class RowBlock:
    """Consecutive rows of one or more series as tensors, and the windows that can be cut from
    them: the whole table in memory, or one streamed chunk with the rows carried before it.

    ``inputs`` ``(N, F)`` scaled; ``labels`` ``(N,)`` class ids or scaled targets; ``times``
    ``(N,)`` (see ``time_as_number``); ``series`` and ``row_number`` ``(N,)``: each row's
    series code and position in its whole series; ``known_columns``: input columns known in
    advance; ``known_lag``: rows back from a window's end to the latest label known there
    (``known_label_lag``; None: none is known), read by the naive baselines.
    """

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, times: torch.Tensor,
                 series: torch.Tensor, row_number: torch.Tensor, seq_length: int, horizon: int,
                 output_steps: int, classification: bool, known_columns: list[int] | None = None,
                 pad_short: bool = False, season: int = 0, moves: torch.Tensor | None = None,
                 known_lag: int | None = 0, weights: torch.Tensor | None = None):
        self.labels, self.times, self.series, self.row_number = labels, times, series, row_number
        self.moves = moves  # direction labels: realised return at each label row (evaluation only)
        self.weights = weights  # data.sample_weight: loss weight of the window ending at each row
        self.inputs, self.pad_short, self.known_lag = inputs, pad_short, known_lag
        # the label history known at a window's end (DLinear, a regression baseline): the
        # seq_length latest known labels, oldest first
        self.history_offsets = (-known_lag - torch.arange(seq_length - 1, -1, -1)
                                if not classification and known_lag is not None else None)
        if pad_short or season or known_lag or self.history_offsets is not None:
            # where each row's series starts (rows grouped by series)
            self.series_start = torch.searchsorted(series, series)
            self.input_offsets = torch.arange(-seq_length + 1, 1)
        # Known-in-advance columns, read at the label rows for decoders (only these columns).
        self.future = inputs[:, known_columns].contiguous() if known_columns else None
        # (N-L+1, L, F) view: entry s holds rows s .. s+L-1. No data is copied here; a batch of
        # windows is copied out in one indexing operation. Padded windows are gathered row by row
        # (a streamed chunk may hold fewer than L rows).
        self.windows = None if pad_short else inputs.unfold(0, seq_length, 1).transpose(1, 2)
        self.seq_length, self.classification = seq_length, classification
        self.label_offsets = torch.arange(horizon, horizon + output_steps)
        # seasonal naive: each label row's value whole seasons earlier, at or before the latest known label
        self.season_offsets = (torch.from_numpy(season_offsets(horizon, output_steps, season, known_lag))
                               if season and not classification and known_lag is not None else None)

    def to(self, device) -> RowBlock:
        """The same block on ``device`` (the device-resident path): every tensor moved once, the
        window view rebuilt over the moved rows (moving the view would copy every window)."""
        moved = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor) and name != "windows":
                setattr(moved, name, value.to(device))
        if not self.pad_short:
            moved.windows = moved.inputs.unfold(0, self.seq_length, 1).transpose(1, 2)
        return moved

    def labels_at(self, rows: torch.Tensor) -> torch.Tensor:
        """The labels at ``rows`` ``(B, k)``: class ids ``(B,)``, or scaled targets ``(B, k)``."""
        y = self.labels[rows]
        return y[:, 0] if self.classification else y

    def missing_label(self) -> float | int:
        """What stands for a label that does not exist: -1 (class ids) or NaN (scaled targets)."""
        return -1 if self.classification else float("nan")

    def labels_back(self, ends: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The labels at rows ``ends + offsets`` (``offsets`` < 0), ``missing_label`` where that
        row is before the start of the window's series."""
        rows = ends[:, None] + offsets
        known = rows >= self.series_start[ends][:, None]
        return torch.where(known, self.labels[rows.clamp(min=0)], self.missing_label())

    def latest_label(self, ends: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the latest label known at each window's end (``known_lag`` rows back, in its
        own series; ``missing_label`` where the series does not reach back): persistence."""
        if not self.known_lag:
            return self.labels[ends]
        return self.labels_back(ends, torch.full((1,), -self.known_lag, device=ends.device))[:, 0]

    def last_rows(self, ends: torch.Tensor) -> dict:
        """The windows ending at ``ends`` reduced to what the leakage audit scores: inputs at the
        last row ``x_last`` ``(B, F)``, labels ``y`` and the latest label known at the window's
        end ``y_last`` (absent where none is known) and, for a regression, the known labels'
        history ``y_history`` ``(B, L)``."""
        out = {"x_last": self.inputs[ends], "y": self.labels_at(ends[:, None] + self.label_offsets)}
        if self.known_lag is not None:
            out["y_last"] = self.latest_label(ends)
        if self.history_offsets is not None:
            out["y_history"] = self.labels_back(ends, self.history_offsets)
        return out

    def inputs_of(self, ends: torch.Tensor) -> dict:
        """The input rows of the windows ending at ``ends``: ``x`` ``(B, L, F)``, and with
        ``pad_short`` the ``mask`` (rows before the series' first row are zeros, flagged False)."""
        if not self.pad_short:
            return {"x": self.windows[ends - (self.seq_length - 1)].contiguous()}
        index = ends[:, None] + self.input_offsets
        real = index >= self.series_start[ends][:, None]
        return {"x": self.inputs[index.clamp(min=0)] * real.unsqueeze(-1), "mask": real}

    def batch(self, ends: torch.Tensor, with_eval_fields: bool = True, beyond_end: bool = False) -> dict:
        """The windows ending at rows ``ends`` as one batch dict (see ``WindowDataset``);
        ``with_eval_fields=False`` leaves out what only evaluation needs (identity, times, last label).
        ``beyond_end`` (forecasts of any table, whose newest label rows are not in it yet): a
        label row past the end of its window's series reads the window's last row instead, and
        ``label_known`` ``(B, k)`` says which label rows are real (rows grouped by series)."""
        rows = ends[:, None] + self.label_offsets
        known = None
        if beyond_end:
            known = rows < torch.searchsorted(self.series, self.series[ends], right=True)[:, None]
            rows = torch.where(known, rows, ends[:, None])
        batch = {"y": self.labels_at(rows), **self.inputs_of(ends)}
        if known is not None:
            batch["label_known"] = known
        if self.weights is not None:  # read by the training loss only
            batch["weight"] = self.weights[ends]
        if with_eval_fields and self.season_offsets is not None:
            batch["y_season"] = self.labels_back(ends, self.season_offsets)
        if with_eval_fields and self.moves is not None:
            batch["move"] = self.moves[rows[:, 0]]
        if with_eval_fields and self.known_lag is not None:
            batch["y_last"] = self.latest_label(ends)
        if with_eval_fields and self.history_offsets is not None:
            batch["y_history"] = self.labels_back(ends, self.history_offsets)
        if with_eval_fields:
            batch["window"] = torch.stack([self.series[ends], self.row_number[ends]], 1)
            batch["end_time"] = self.times[ends]
            batch["label_time"] = self.times[rows]
        if self.future is not None:
            batch["future"] = self.future[rows]
        return batch
