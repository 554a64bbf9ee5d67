"""Predictions as a table: one row per window and forecast step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from seqtrain.data.rows import time_from_number


def concat_records(outputs: list[dict], key: str) -> np.ndarray:
    """One field of every batch's record, concatenated."""
    return torch.cat([o[key] for o in outputs]).numpy()


def predictions_frame(state, series_names: list, outputs: list[dict],
                      quantiles: list[float] | None = None) -> pd.DataFrame:
    """Predictions of windows as rows, one per window and forecast step.

    ``state`` is the run's ``DataState``; ``series_names`` names the series codes of
    ``outputs[i]["window"][:, 0]``. Columns: ``time`` (the label row's time), ``window_end``
    (time of the window's last input row), ``step`` (1..output_steps), the group column if any,
    ``y_true`` (when the outputs hold the truth), ``y_pred``, and ``prob_<class>`` per class
    (classification) or ``q<quantile>`` per quantile (quantile loss), and ``lo_<level>``,
    ``hi_<level>`` per conformal coverage level (a calibrated regression run). Where a label row lies
    beyond the end of the table (``label_known`` False), its time and truth are missing.
    """
    steps, time_dtype = state.window.output_steps, state.time_dtype
    window = concat_records(outputs, "window")
    known = concat_records(outputs, "label_known").reshape(-1) if "label_known" in outputs[0] else None
    label_time = time_from_number(concat_records(outputs, "label_time").reshape(-1), time_dtype)
    frame = {
        "time": _missing_where(label_time, known),
        "window_end": time_from_number(np.repeat(concat_records(outputs, "end_time"), steps), time_dtype),
        "step": np.tile(np.arange(1, steps + 1), len(window)),
    }
    if state.group_col:
        names = np.asarray(series_names, dtype=object)
        frame[state.group_col] = names[window[:, 0]].repeat(steps)
    truth = "y" in outputs[0]
    if state.task == "classification":
        probs = concat_records(outputs, "probs")
        classes = np.asarray(state.classes, dtype=object)
        integer_classes = all(isinstance(c, (int, np.integer)) for c in state.classes)
        if truth:
            ids = concat_records(outputs, "y")
            frame["y_true"] = _missing_where(classes[ids], known if known is None else known & (ids >= 0),
                                             integer_classes)
        frame["y_pred"] = classes[probs.argmax(1)]
        if "move" in outputs[0]:  # direction labels: the realised return from window end to label row
            frame["move"] = concat_records(outputs, "move").astype(np.float64)
        for j, c in enumerate(state.classes):
            frame[f"prob_{c}"] = probs[:, j]
        out = pd.DataFrame(frame)
        if integer_classes:
            out["y_pred"] = out["y_pred"].astype(np.int64)
            if truth and known is None:
                out["y_true"] = out["y_true"].astype(np.int64)
        return out
    if truth:
        truth_values = state.target_scaler.inverse(concat_records(outputs, "y")).reshape(-1)
        frame["y_true"] = _missing_where(truth_values, known)
    frame["y_pred"] = concat_records(outputs, "pred").reshape(-1).astype(np.float64)  # (windows * steps,)
    if quantiles:
        values = concat_records(outputs, "quantiles").reshape(-1, len(quantiles))
        for j, q in enumerate(quantiles):
            frame[f"q{q:g}"] = values[:, j].astype(np.float64)
    for key in outputs[0]:
        if key.startswith(("lo_", "hi_")):
            frame[key] = concat_records(outputs, key).reshape(-1).astype(np.float64)
    return pd.DataFrame(frame)


def _missing_where(values: np.ndarray, known: np.ndarray | None, integers: bool = False):
    """``values`` with the entries not ``known`` missing (NaT, NaN or <NA>)."""
    if known is None or known.all():
        return values
    if np.issubdtype(values.dtype, np.datetime64):
        return np.where(known, values, np.datetime64("NaT"))
    if integers or values.dtype.kind in "iu":
        out = pd.array(np.where(known, values, 0).astype(np.int64), dtype="Int64")
        out[~known] = pd.NA
        return out
    if values.dtype.kind == "f":
        return np.where(known, values, np.nan)
    return np.where(known, values, None)
