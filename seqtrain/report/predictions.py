"""Test-split predictions as a table (one row per window and forecast step), and the naive
baselines on the same windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seqtrain.data.rows import time_from_number


def _cat(outputs: list[dict], key: str) -> np.ndarray:
    return torch.cat([o[key] for o in outputs]).numpy()


def predictions_frame(data, outputs: list[dict], quantiles: list[float] | None = None) -> pd.DataFrame:
    """The module's test outputs as rows: time, series, truth and prediction.

    ``data`` gives the metadata (state, series names, classes, target scaler). Columns: ``time``
    (the label row's time), ``window_end`` (time of the window's last input row), ``step``
    (1..output_steps), the group column if any, ``y_true``, ``y_pred``, and ``prob_<class>`` per
    class (classification) or ``q<quantile>`` per quantile (quantile loss).
    """
    state = data.state
    steps, time_dtype = state["output_steps"], state["time_dtype"]
    window = _cat(outputs, "window")
    frame = {
        "time": time_from_number(_cat(outputs, "label_time").reshape(-1), time_dtype),
        "window_end": time_from_number(np.repeat(_cat(outputs, "end_time"), steps), time_dtype),
        "step": np.tile(np.arange(1, steps + 1), len(window)),
    }
    if state["group_col"]:
        names = np.asarray(data.series_names, dtype=object)
        frame[state["group_col"]] = names[window[:, 0]].repeat(steps)
    if data.task == "classification":
        probs = _cat(outputs, "probs")
        classes = np.asarray(data.classes, dtype=object)
        frame["y_true"] = classes[_cat(outputs, "y")]
        frame["y_pred"] = classes[probs.argmax(1)]
        for j, c in enumerate(data.classes):
            frame[f"prob_{c}"] = probs[:, j]
        out = pd.DataFrame(frame)
        if all(isinstance(c, (int, np.integer)) for c in data.classes):
            out[["y_true", "y_pred"]] = out[["y_true", "y_pred"]].astype(np.int64)
        return out
    frame["y_true"] = data.target_scaler.inverse(_cat(outputs, "y")).reshape(-1)
    frame["y_pred"] = _cat(outputs, "pred").reshape(-1).astype(np.float64)  # (windows * steps,)
    if quantiles:
        values = _cat(outputs, "quantiles").reshape(-1, len(quantiles))
        for j, q in enumerate(quantiles):
            frame[f"q{q:g}"] = values[:, j].astype(np.float64)
    return pd.DataFrame(frame)


def baseline(data, outputs: list[dict]) -> dict:
    """The naive forecast on the test windows, for an honest comparison.

    Classification: the majority class of the training labels. Regression: persistence (the
    target at the window's last row, for every step); with horizon 0, whose label is that row's
    own value, the training mean.
    """
    y = _cat(outputs, "y")
    if data.task == "classification":
        majority = int(np.argmax(data.state["class_counts"]))
        return {"majority_acc": float((y == majority).mean())}
    truth = data.target_scaler.inverse(y)
    if data.state["horizon"] > 0:
        name, guess = "persistence", data.target_scaler.inverse(_cat(outputs, "y_last"))[:, None]
    else:
        name, guess = "train_mean", data.target_scaler.mean[0]
    err = truth - guess
    return {f"{name}_mae": float(np.abs(err).mean()), f"{name}_rmse": float((err**2).mean() ** 0.5)}


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
