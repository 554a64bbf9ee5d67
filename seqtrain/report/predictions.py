"""Test-split predictions as a table: one row per window and forecast step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seqtrain.data.prepare import PreparedData


def predictions_frame(data: PreparedData, outputs: list[dict],
                      quantiles: list[float] | None = None) -> pd.DataFrame:
    """Join the module's test outputs back to rows: time, series, truth and prediction.

    Columns: ``time`` (the label row's time), ``window_end`` (time of the window's last input
    row), ``step`` (1..output_steps), the group column if any, ``y_true``, ``y_pred``, and
    ``prob_<class>`` per class (classification) or ``q<quantile>`` per quantile (quantile loss).
    """
    state = data.state
    horizon, steps = state["horizon"], state["output_steps"]
    index = torch.cat([o["index"] for o in outputs]).numpy()
    ends = data.ends["test"][index]
    label_rows = ends[:, None] + np.arange(horizon, horizon + steps)  # (n, k)
    frame = {
        "time": data.times[label_rows].ravel(),
        "window_end": np.repeat(data.times[ends], steps),
        "step": np.tile(np.arange(1, steps + 1), len(ends)),
    }
    if state["group_col"]:
        names = np.asarray(data.series_names, dtype=object)
        frame[state["group_col"]] = names[data.series[ends]].repeat(steps)
    if data.task == "classification":
        probs = torch.cat([o["probs"] for o in outputs]).numpy()
        classes = np.asarray(data.classes, dtype=object)
        frame["y_true"] = classes[data.labels[label_rows[:, 0]]]
        frame["y_pred"] = classes[probs.argmax(1)]
        for j, c in enumerate(data.classes):
            frame[f"prob_{c}"] = probs[:, j]
        out = pd.DataFrame(frame)
        if all(isinstance(c, (int, np.integer)) for c in data.classes):
            out[["y_true", "y_pred"]] = out[["y_true", "y_pred"]].astype(np.int64)
        return out
    pred = torch.cat([o["pred"] for o in outputs]).numpy().reshape(-1)  # (windows * steps,)
    frame["y_true"] = data.target_scaler.inverse(data.labels[label_rows]).reshape(-1)
    frame["y_pred"] = pred.astype(np.float64)
    if quantiles:
        values = torch.cat([o["quantiles"] for o in outputs]).numpy().reshape(-1, len(quantiles))
        for j, q in enumerate(quantiles):
            frame[f"q{q:g}"] = values[:, j].astype(np.float64)
    return pd.DataFrame(frame)


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
