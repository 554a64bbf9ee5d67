"""The run's pictures: training curves, and predictions against the truth on the test split."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from seqtrain.data.rows import time_from_number  # noqa: E402
from seqtrain.files import save_figure  # noqa: E402

MAX_POINTS = 500  # of the test period drawn per series, so single steps stay readable


def _save(fig, path: Path) -> None:
    try:
        save_figure(path, fig, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def plot_lr_find(lrs: list[float], losses: list[float], chosen: float, path: Path) -> None:
    """Lightning's learning-rate finder: training loss against a rising rate, and the pick."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(lrs, losses)
    ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen {chosen:.2g}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="learning-rate finder")
    ax.legend()
    _save(fig, path)


def plot_curves(rows: list[dict], main_metric: str, path: Path, steps: list[dict] | None = None) -> None:
    """Train/val loss and the task's main metric per epoch, and the learning rate per step."""
    frame = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    if steps:
        step_frame = pd.DataFrame(steps)
        axes[2].plot(step_frame["step"], step_frame["lr"], lw=1, color="tab:green")
    axes[2].set_xlabel("optimizer step")
    axes[2].set_title("learning rate")
    axes[2].grid(alpha=0.3)
    for ax, name in zip(axes[:2], ("loss", main_metric), strict=True):
        for split, style in (("train", "-o"), ("val", "-s")):
            column = f"{split}_{name}"
            if column in frame and frame[column].notna().any():
                ax.plot(frame["epoch"] + 1, frame[column], style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run stopped before its first epoch ended has none
            ax.legend()
    _save(fig, path)


def plot_predictions(pred: pd.DataFrame, group_col: str | None, task: str, classes,
                     path: Path, boundaries: list | None = None) -> None:
    """Prediction vs truth over time for up to three series (first forecast step), beside a
    confusion matrix when classifying. With ``boundaries`` (walk-forward: each fold's test
    start), the whole out-of-sample period, thinned evenly, with the fold boundaries marked."""
    first = pred[pred["step"] == 1]
    groups = list(first.groupby(group_col, sort=True)) if group_col else [("all", first)]
    groups = groups[:3]
    names = [f"s{i}" for i in range(len(groups))]
    classify = task == "classification"
    layout = [[name, "cm"] for name in names] if classify else [[name] for name in names]
    fig, axes = plt.subplot_mosaic(layout, figsize=(13 if classify else 11, 2.8 * len(groups) + 0.5),
                                   layout="constrained",
                                   width_ratios=[3, 1] if classify else None)
    points = MAX_POINTS // 3 if classify else MAX_POINTS
    for name, (series, frame) in zip(names, groups, strict=True):
        ax = axes[name]
        frame = frame.iloc[::max(1, len(frame) // points)] if boundaries else frame.tail(points)
        if classify and len(classes) == 2:
            ax.step(frame["time"], frame["y_true"] == classes[1], where="mid", lw=0.8,
                    label=f"true = {classes[1]}", color="black")
            ax.plot(frame["time"], frame[f"prob_{classes[1]}"], lw=1, marker=".", ms=3,
                    label=f"P({classes[1]})", color="tab:orange")
            ax.set_ylabel("probability")
        else:
            ax.plot(frame["time"], frame["y_true"], lw=1, label="truth", color="black")
            ax.plot(frame["time"], frame["y_pred"], lw=1, label="prediction", color="tab:orange")
            ax.set_ylabel("value" if task == "regression" else "class")
        if boundaries:
            for start in boundaries:
                ax.axvline(start, color="grey", lw=0.8, ls="--")
            ax.set_title(f"out of sample, walk-forward folds (dashed: fold starts) · series {series}",
                         fontsize=10)
        else:
            ax.set_title(f"test split · series {series} · last {len(frame)} windows", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        if np.issubdtype(frame["time"].dtype, np.datetime64):
            locator = mdates.AutoDateLocator()
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if classify:
        _confusion(axes["cm"], first["y_true"].to_numpy(), first["y_pred"].to_numpy(), classes)
    _save(fig, path)


def plot_confusion(y_true, y_pred, classes, path: Path) -> None:
    """The test confusion matrix alone (cases: one prediction per case)."""
    size = max(3.5, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size), layout="constrained")
    _confusion(ax, y_true, y_pred, classes)
    _save(fig, path)


def _confusion(ax, y_true, y_pred, classes) -> None:
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(counts, ([index[v] for v in y_true], [index[v] for v in y_pred]), 1)
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes])
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test)")
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, str(n), ha="center", va="center",
                color="white" if n > counts.max() / 2 else "black")


def plot_interpretation(attention: list[dict], importance, output_steps: int, data, folder: Path,
                        n_windows: int = 4) -> list[Path]:
    """``attention.png`` and ``variable_importance.png`` for models that expose them, from what
    the test pass gathered (``callbacks.CollectPredictions``): attention maps ``(1, Q, L)`` of
    some test windows, drawn for ``n_windows`` of them spread over the split, and the mean
    variable importance ``(F,)``."""
    written = []
    if attention:
        shown = np.linspace(0, len(attention) - 1, min(n_windows, len(attention))).round().astype(int)
        picked = [attention[i] for i in shown]
        window = torch.cat([p["window"] for p in picked]).numpy()
        end_time = time_from_number(torch.cat([p["end_time"] for p in picked]).numpy(),
                                    data.state.time_dtype)
        titles = [f"{data.series_names[s]} · window ending {str(t)[:16]}"
                  for s, t in zip(window[:, 0], end_time, strict=True)]
        weights = torch.cat([p["weights"] for p in picked]).numpy()
        written.append(_attention(weights, titles, output_steps, folder / "attention.png"))
    if importance is not None:
        written.append(_importance(importance.numpy(), data.input_names, folder / "variable_importance.png"))
    return written


def _attention(weights: np.ndarray, titles: list[str], output_steps: int, path: Path) -> Path:
    n, queries, length = weights.shape
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 1, 3.2), squeeze=False, layout="constrained")
    lags = np.arange(-length + 1, 1)
    for ax, w, title in zip(axes[0], weights, titles, strict=True):
        over_steps = queries == output_steps  # decoder steps; otherwise input rows (self-attention)
        top, bottom = (0.5, queries + 0.5) if over_steps else (lags[0] - 0.5, lags[-1] + 0.5)
        image = ax.imshow(w, aspect="auto", cmap="viridis", interpolation="nearest",
                          extent=(lags[0] - 0.5, lags[-1] + 0.5, bottom, top))
        if over_steps and queries <= 12:
            ax.set_yticks(range(1, queries + 1))
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("input row (0 = window's last row)")
        ax.set_ylabel("forecast step" if over_steps else "attending input row")
        fig.colorbar(image, ax=ax, fraction=0.05)
    fig.suptitle("attention over input rows (test windows)")
    _save(fig, path)
    return path


def _importance(importance: np.ndarray, names: list[str], path: Path) -> Path:
    order = np.argsort(importance)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2), layout="constrained")
    ax.barh([names[i] for i in order], importance[order], color="tab:blue")
    ax.set_xlabel("mean encoder variable-selection weight (test windows)")
    ax.set_title("variable importance")
    _save(fig, path)
    return path


def plot_folds(folds: pd.DataFrame, pooled: dict, path: Path) -> None:
    """Walk-forward: the main metric per fold with its 95% interval, beside each baseline, and
    the pooled value."""
    metric = pooled["metric"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = folds["fold"].to_numpy()
    values = folds[metric].to_numpy()
    ax.errorbar(x, values, yerr=[values - folds["interval_low"], folds["interval_high"] - values],
                fmt="o-", color="black", capsize=3, label="model (95% interval)")
    for name in pooled["baselines"]:
        column = f"baseline_{name}"
        if column in folds:
            ax.plot(x, folds[column], ".--", alpha=0.8, label=name)
    ax.axhline(pooled["value"], color="black", alpha=0.3, label=f"pooled {pooled['value']:.3g}")
    ax.set_xlabel("fold (test blocks in time order)")
    ax.set_ylabel(metric.removeprefix("test_"))
    ax.set_xticks(x)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"walk-forward: {metric} per fold beside the baselines")
    _save(fig, path)


def plot_sweep(jobs: list[int], values: list[float], monitor: str, mode: str, path: Path) -> None:
    """A sweep's objective per job in launch order (an Optuna study: per trial) and the best so
    far; failed jobs are left out."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(jobs, values, "o", color="tab:blue", label=monitor)
    best = np.minimum.accumulate(values) if mode == "min" else np.maximum.accumulate(values)
    ax.step(jobs, best, where="post", color="black", label="best so far")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("job (trial)")
    ax.set_ylabel(monitor)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"sweep: {monitor} per job ({'lower' if mode == 'min' else 'higher'} is better)")
    _save(fig, path)


def plot_equity(trading: dict, path: Path) -> None:
    """Growth of 1 trading the predicted direction (after costs) beside buy-and-hold."""
    equity = trading["equity"]
    times = pd.to_datetime(pd.Series(equity["time"]), errors="coerce")
    x = times if times.notna().all() else np.arange(len(equity["time"]))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(x, equity["model"], label=f"model (cost {trading['cost_bps']:g} bp per unit traded)")
    ax.plot(x, equity["buy_and_hold"], label="buy and hold", alpha=0.7)
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_ylabel("growth of 1")
    ax.set_title("trading the predicted direction (a signal view, not a backtest)")
    fig.autofmt_xdate()
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_pbo(logits: np.ndarray, pbo: float, path: Path) -> None:
    """A sweep's probability of backtest overfitting: the logits of the out-of-sample relative
    rank of the job best in-sample, over every split; the mass at or left of 0 is the PBO."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    values, counts = np.unique(np.round(logits, 9), return_counts=True)
    if len(values) <= 40:  # few trials: the logit takes one value per rank, a bar each
        width = 0.8 * (np.diff(values).min() if len(values) > 1 else 1.0)
        ax.bar(values, counts, width=width, color="tab:blue", alpha=0.8)
    else:
        ax.hist(logits, bins=40, color="tab:blue", alpha=0.8)
    ax.axvline(0.0, color="tab:red", linestyle="--", label=f"PBO = {pbo:.2f} (share at or left of 0)")
    ax.set_xlabel("logit of the in-sample best job's out-of-sample rank")
    ax.set_ylabel("splits")
    ax.set_title("probability of backtest overfitting (combinatorially symmetric CV)")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_paths(paths: pd.DataFrame, path: Path) -> None:
    """CPCV: the main metric of each backtest path beside its best baseline, and each path's
    Sharpe ratio where the label has moves, as points over a box of their spread."""
    metric = next(c for c in paths.columns if c.startswith("test_"))
    sharpe = pd.to_numeric(paths["sharpe"], errors="coerce")
    panels = [(metric, paths[metric].astype(float))]
    if sharpe.notna().any():
        panels.append(("Sharpe (annualised)", sharpe))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels) + 1, 3.5), squeeze=False)
    for ax, (name, values) in zip(axes[0], panels, strict=True):
        values = values.dropna()
        ax.boxplot(values, widths=0.5, showfliers=False)
        ax.plot(np.ones(len(values)), values, "o", color="black", alpha=0.6, label="model, per path")
        if name == metric:
            ax.plot(np.full(len(paths), 1.35), paths["baseline"].astype(float), "x", color="tab:orange",
                    label="best baseline")
            ax.legend(fontsize=7, loc="best")
        ax.set_xticks([])
        ax.set_ylabel(name.removeprefix("test_"))
    fig.suptitle(f"cpcv: {len(paths)} backtest paths (walk-forward: one)")
    _save(fig, path)


def plot_calibration(curves: dict[str, dict], path: Path) -> None:
    """Reliability diagram: per confidence bin (``seqtrain.engine.calibration.reliability``), the
    accuracy against the mean top-label confidence of its test windows, one line per set of
    probabilities (e.g. before and after temperature scaling), the diagonal where they would
    mean what they say; below, the share of windows in each bin."""
    fig, (ax, share) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, layout="constrained",
                                    gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", lw=1, label="perfectly calibrated")
    width = 1 / len(next(iter(curves.values()))["count"])
    bar = 0.8 * width / len(curves)  # the curves' bars side by side in each bin
    for i, (label, table) in enumerate(curves.items()):
        filled = table["count"] > 0
        ax.plot(table["confidence"][filled], table["accuracy"][filled], "-o", ms=4, label=label)
        left = np.arange(len(table["count"])) * width + 0.1 * width + i * bar
        share.bar(left, table["count"] / table["count"].sum(), width=bar, align="edge", label=label)
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="reliability (test windows)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    share.set(xlabel="top-label confidence", ylabel="share of windows")
    share.grid(alpha=0.3)
    _save(fig, path)
