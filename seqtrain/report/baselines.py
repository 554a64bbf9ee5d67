"""Naive baselines on the model's own test windows, skill against the best of them, and a 95%
interval from a block bootstrap over time (blocks of consecutive window ends, each carrying every
series' windows at those times, so that neither the overlap of neighbouring windows nor series
that move together shrink it).

Baselines, each read only from what is known at a window's end (row t):
- persistence: the latest label known at t, for every step: the label of row t with a horizon
  (the target at t; with ``data.label`` a move, the move over the h rows up to t); with
  ``horizon=0`` the label column looks ahead, and the latest label known at t is the one
  ``data.embargo`` rows back (none without an embargo: persistence is then left out, with a
  note, not replaced). Where a series does not reach back that far, the window takes the
  majority class or the training mean, and a note says how many did;
- classification: the majority class of the training windows' labels; a logistic regression
  on the window's last row (a model that ignores the sequence: if it ties the network, the
  sequence adds nothing), fit on training windows;
- regression: the mean of the training labels; a linear regression on the window's last row,
  fit on training windows; DLinear (Zeng et al. 2023: a linear map of the window's trend and
  remainder, among the strongest simple forecasters) on the latest known labels, as many as the
  window has rows, fit in closed form on training windows; with ``eval.season`` the seasonal
  naive forecast (each label row's value whole seasons earlier, at or before the latest known
  label, so left out where none is known; persistence where the series does not reach back
  that far, and the training mean where persistence is not known either).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from seqtrain.data.rows import known_label_lag
from seqtrain.report.predictions import concat_records as _cat

RESAMPLES = 1000
LEVEL = 0.95


def fit_last_row_model(task: str, x_last: np.ndarray, y: np.ndarray, n_classes: int = 0):
    """A model of the label from a window's last input row, fit on training windows: weights of
    a multinomial logistic regression (L2, by L-BFGS) or of a ridge regression, per step."""
    x = np.column_stack([np.asarray(x_last, np.float64), np.ones(len(x_last))])
    if task == "regression":
        y = np.asarray(y, np.float64).reshape(len(x), -1)
        ridge = 1e-3 * len(x) * np.eye(x.shape[1])
        ridge[-1, -1] = 0.0  # the intercept is not shrunk
        return np.linalg.solve(x.T @ x + ridge, x.T @ y)  # (F + 1, k)
    xt, yt = torch.from_numpy(x), torch.from_numpy(np.asarray(y, np.int64))
    weights = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ weights, yt) + 1e-3 * (weights[:-1] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach().numpy()


def last_row_predictions(task: str, weights: np.ndarray, x_last: np.ndarray) -> np.ndarray:
    """Class ids ``(B,)``, or scaled forecasts ``(B, k)``, of a ``fit_last_row_model``."""
    out = np.column_stack([np.asarray(x_last, np.float64), np.ones(len(x_last))]) @ weights
    return out.argmax(1) if task == "classification" else out


DLINEAR_KERNEL = 25  # DLinear's moving average (Zeng et al. 2023)


def moving_average_matrix(length: int, kernel: int = DLINEAR_KERNEL) -> np.ndarray:
    """``(L, L)`` A with ``history @ A.T`` the trend of DLinear's decomposition: a centred
    moving average of ``kernel`` rows, the window's first and last values repeated beyond its
    ends (DLinear's ``series_decomp``)."""
    half = (kernel - 1) // 2
    rows = np.clip(np.arange(length)[:, None] + np.arange(-half, kernel - half), 0, length - 1)
    matrix = np.zeros((length, length))
    np.add.at(matrix, (np.repeat(np.arange(length), kernel), rows.ravel()), 1.0 / kernel)
    return matrix


def fit_dlinear(history: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """DLinear (Zeng et al. 2023) on the known labels' history ``(n, L)``, fit on training
    windows in closed form: the history is split into its moving-average trend and the
    remainder, each mapped to the k steps by a linear layer, the two layers fit together by
    ridge least squares (the MSE optimum DLinear's gradient descent heads for). Both parts are
    linear in the history, so the fit folds into one ``(L + 1, k)`` map (intercept last).
    Windows whose series does not reach back a whole history are left out of the fit; None
    when fewer windows than coefficients remain."""
    history = np.asarray(history, np.float64)
    y = np.asarray(y, np.float64).reshape(len(history), -1)
    whole = np.isfinite(history).all(1) & np.isfinite(y).all(1)
    length = history.shape[1]
    if whole.sum() <= 2 * length + 1:
        return None
    trend_map = moving_average_matrix(length)
    trend = history[whole] @ trend_map.T
    x = np.column_stack([history[whole] - trend, trend, np.ones(int(whole.sum()))])
    ridge = 1e-3 * len(x) * np.eye(x.shape[1])
    ridge[-1, -1] = 0.0  # the intercept is not shrunk
    weights = np.linalg.solve(x.T @ x + ridge, x.T @ y[whole])  # (2L + 1, k)
    remainder, trend_weights = weights[:length], weights[length:2 * length]
    folded = remainder + trend_map.T @ (trend_weights - remainder)  # (I - A)^T Ws + A^T Wt
    return np.vstack([folded, weights[-1:]])


def dlinear_predictions(weights: np.ndarray, history: np.ndarray) -> np.ndarray:
    """``(B, k)`` scaled forecasts of a ``fit_dlinear`` map. A series that does not reach back a
    whole history has its earliest known label repeated before it (DLinear's own edge rule);
    one with no known label at all forecasts the intercept (the training mean's neighbourhood)."""
    history = np.asarray(history, np.float64)
    known = np.isfinite(history)
    first = np.where(known.any(1), known.argmax(1), history.shape[1] - 1)
    earliest = np.where(known.any(1), history[np.arange(len(history)), first], 0.0)
    filled = np.where(known, history, earliest[:, None])
    return filled @ weights[:-1] + weights[-1]


def dlinear_recorder(train_last_rows: dict):
    """What the test records gain from each window's label history (``SeqModule.history_baselines``):
    ``dlinear`` ``(B, k)`` scaled forecasts and ``dlinear_short`` ``(B,)``, whether the window's
    series reached back less than a whole history; None without a history (a classifier, or no
    label known at the window's end) or without enough whole training windows to fit."""
    if "y_history" not in train_last_rows:
        return None
    weights = fit_dlinear(train_last_rows["y_history"].numpy(), train_last_rows["y"].numpy())
    if weights is None:
        return None

    def record(history: torch.Tensor) -> dict:
        return {"dlinear": torch.from_numpy(dlinear_predictions(weights, history.numpy())).float(),
                "dlinear_short": ~torch.isfinite(history).all(1)}

    return record


NOT_KNOWN = ("not known at the window's end with horizon=0 and no embargo (the label column looks "
             "ahead; data.embargo=e says it reads e rows ahead, and the label e rows back is then known)")


def baseline_predictions(task: str, latest: np.ndarray | None, fallback: float | int,
                         last_row: np.ndarray, seasonal: np.ndarray | None = None,
                         dlinear: np.ndarray | None = None, dlinear_short: np.ndarray | None = None,
                         ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each baseline's predictions on the test windows, in the units of the truth (class ids, or
    forecasts ``(B, k)`` in target units), and a note for each baseline that had to fill in
    windows.

    ``latest``: the latest label known at each window's end (``RowBlock.latest_label``; -1 or
    NaN where its series does not reach back), None where no label is known there: then there
    is no persistence. ``fallback``: the majority class of the training labels, or their mean
    (the forecast that knows nothing of the window). ``last_row``: the last-row model's
    predictions. ``seasonal``: regression, each label row's value whole seasons earlier (NaN
    where the series does not reach back). ``dlinear``: regression, DLinear's forecasts in
    target units, ``dlinear_short`` the windows whose history was filled in."""
    n, notes = len(last_row), {}
    if task == "classification":
        out = {"majority": np.full(n, fallback, np.int64)}
        if latest is not None:
            latest = np.asarray(latest, np.int64)
            out["persistence"] = _filled(latest, latest >= 0, fallback, "persistence",
                                         "the majority class", notes)
        out["last_row_logistic"] = np.asarray(last_row, np.int64)
        return out, notes
    steps = last_row.shape[1]
    mean = np.full((n, steps), fallback, np.float64)
    out, told = {}, np.zeros(n, bool)  # told: windows whose persistence is a known label
    if latest is not None:
        latest = np.repeat(np.asarray(latest, np.float64).reshape(n, 1), steps, 1)
        told = np.isfinite(latest[:, 0])
        out["persistence"] = _filled(latest, np.isfinite(latest), mean, "persistence",
                                     "the training mean", notes)
    out["train_mean"] = mean
    out["last_row_linear"] = np.asarray(last_row, np.float64)
    if seasonal is not None:
        seasonal = np.asarray(seasonal, np.float64).reshape(n, steps)
        known = np.isfinite(seasonal)
        out["seasonal_naive"] = _filled(seasonal, known, out.get("persistence", mean), "seasonal_naive",
                                        _seasonal_instead(~known.all(1), told), notes)
    if dlinear is not None:
        out["dlinear"] = np.asarray(dlinear, np.float64).reshape(n, steps)
        short = int(np.asarray(dlinear_short, bool).sum()) if dlinear_short is not None else 0
        if short:
            notes["dlinear"] = (f"{short} of {n} windows' series do not reach back a whole window; "
                                f"their history repeats its earliest known label before it")
    return out, notes


def _seasonal_instead(missing: np.ndarray, told: np.ndarray) -> str:
    """What the seasonal naive's filled-in windows take: persistence where it is a known label,
    the training mean where persistence was filled in (or left out) too."""
    by_mean = int((missing & ~told).sum())
    if not by_mean:
        return "persistence"
    if by_mean == int(missing.sum()):
        return "the training mean"
    return f"persistence, or the training mean where persistence is not known either ({by_mean} of them)"


def _filled(values: np.ndarray, known: np.ndarray, instead, name: str, instead_name: str,
            notes: dict) -> np.ndarray:
    """``values`` where ``known``, ``instead`` elsewhere, with a note of how many windows were
    filled in (a window with any missing step counts)."""
    missing = ~known.reshape(len(known), -1).all(1)
    if missing.any():
        notes[name] = (f"{int(missing.sum())} of {len(missing)} windows' series do not reach back far "
                       f"enough; those take {instead_name}")
    return np.where(known, values, instead)


def window_losses(task: str, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per-window loss whose mean is the error: 1 - correct (classification), or the absolute
    error averaged over the forecast steps (regression: the mean is the MAE)."""
    if task == "classification":
        return (np.asarray(predicted) != np.asarray(truth)).astype(np.float64)
    error = np.asarray(predicted, np.float64) - np.asarray(truth, np.float64)
    return np.abs(error).reshape(len(truth), -1).mean(1)


def block_starts(n: int, block: int, seed: int = 0, resamples: int = RESAMPLES) -> tuple[np.ndarray, int]:
    """``(resamples, ceil(n / block))`` random starts of a moving-block bootstrap over ``n``
    positions, and the (clipped) block length: each resample strings the blocks together and
    cuts the last one so that it holds ``n`` positions."""
    block = max(1, min(block, n))
    rng = np.random.default_rng(seed)
    return rng.integers(0, n - block + 1, size=(resamples, math.ceil(n / block))), block


def block_resample_index(n: int, block: int, seed: int = 0, resamples: int = RESAMPLES) -> np.ndarray:
    """``(resamples, n)`` positions of a moving-block bootstrap: each resample strings together
    blocks of ``block`` consecutive positions from random starts, cut to ``n``."""
    starts, block = block_starts(n, block, seed, resamples)
    return (starts[:, :, None] + np.arange(block)).reshape(resamples, -1)[:, :n]


def block_bootstrap(losses: dict[str, np.ndarray], block: int, seed: int = 0, resamples: int = RESAMPLES,
                    times: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Resampled means of each loss series (all resampled with the same blocks, so differences
    are paired): moving blocks of ``block`` consecutive distinct ``times`` (window ends), each
    drawn time carrying every window that ends then, ``resamples`` times. Series that move
    together are then one piece of evidence per time step, not one per series. Without
    ``times`` each window is its own time step.

    Vectorised through prefix sums over the time axis: a block's loss and window count are two
    differences, so a draw costs ``ceil(T / block)`` look-ups, not ``T``."""
    n = len(next(iter(losses.values())))
    inverse = np.arange(n) if times is None else np.unique(np.asarray(times), return_inverse=True)[1].ravel()
    steps = int(inverse.max()) + 1 if n else 0
    starts, block = block_starts(steps, block, seed, resamples)
    last = steps - (starts.shape[1] - 1) * block  # the cut last block's length

    def total(per_time: np.ndarray) -> np.ndarray:
        prefix = np.concatenate([[0.0], np.cumsum(per_time)])
        whole = prefix[starts[:, :-1] + block] - prefix[starts[:, :-1]]
        return whole.sum(1) + prefix[starts[:, -1] + last] - prefix[starts[:, -1]]

    windows = total(np.bincount(inverse, minlength=steps).astype(np.float64))
    return {name: total(np.bincount(inverse, np.asarray(values, np.float64), steps)) / windows
            for name, values in losses.items()}


def skill_report(task: str, metric: str, model_loss: np.ndarray, baseline_losses: dict[str, np.ndarray],
                 seed: int = 0, times: np.ndarray | None = None, independent: bool = False) -> dict:
    """The main metric's 95% interval, each baseline's value, the skill against the best baseline
    (1 - model error / baseline error) and whether the model beats it beyond the interval of
    their paired difference.

    ``times`` holds each window's end (the time of its last input row): the bootstrap resamples
    blocks of about √T consecutive distinct ends (T of them), every series' windows at a drawn
    time together, so that copies of one series, or symbols that move as one, do not narrow the
    interval. Without it each window is its own time step (one series in time order).
    ``independent`` (cases: one window per case, no case overlapping another): each window is
    drawn on its own (blocks of one)."""
    model_loss = np.asarray(model_loss, np.float64)
    steps = len(model_loss) if times is None else len(np.unique(np.asarray(times)))
    block = 1 if independent else max(1, math.ceil(math.sqrt(steps)))
    draws = block_bootstrap({"model": model_loss, **baseline_losses}, block, seed, times=times)
    tail = (1 - LEVEL) / 2 * 100
    to_metric = (lambda loss: 1 - loss) if task == "classification" else (lambda loss: loss)
    low, high = np.percentile(to_metric(draws["model"]), [tail, 100 - tail])
    errors = {name: float(losses.mean()) for name, losses in baseline_losses.items()}
    best = min(errors, key=errors.get)
    model_error = float(model_loss.mean())
    difference = draws[best] - draws["model"]  # > 0: the model errs less than the best baseline
    d_low, d_high = np.percentile(difference, [tail, 100 - tail])
    return {
        "metric": metric,
        "value": float(to_metric(model_error)),
        "interval": [float(low), float(high)],
        "level": LEVEL,
        "block": block,  # distinct window ends per resampled block (time steps; 1: windows drawn alone)
        "independent": independent,  # windows drawn one at a time (cases), not in blocks of time
        "times": steps,  # distinct window ends the blocks are drawn from
        "windows": len(model_loss),
        "resamples": RESAMPLES,
        "baselines": {name: float(to_metric(error)) for name, error in errors.items()},
        "baseline_intervals": {name: np.percentile(to_metric(draws[name]), [tail, 100 - tail]).tolist()
                               for name in baseline_losses},
        "best_baseline": best,
        "skill": float(1 - model_error / errors[best]) if errors[best] > 0 else None,
        "improvement_interval": [float(d_low), float(d_high)],  # best baseline's error - model's
        "beats_best_baseline": bool(d_low > 0),
    }


def compare_with_baselines(state, records: list[dict], train_last_rows: dict,
                           seed: int = 0, season: int = 0) -> tuple[dict, dict, dict, dict]:
    """``(baseline_test, skill, columns, notes)``: for metrics.json each baseline's test metrics
    (accuracy, or MAE and RMSE) on the model's test windows, ``skill_report`` of the main
    metric and a note per baseline left out or filled in; for predictions.parquet each
    baseline's prediction per row (``baseline_<name>``: a class, or a value per window and step).

    ``state`` is the run's ``DataState``; ``records`` the test records (``probs`` or ``pred``,
    ``y``, ``x_last``, and ``y_last`` / ``y_season`` where a label is known at the window's
    end); ``train_last_rows`` up to 20,000 training windows as their last input row and labels
    (``SeqDataModule.last_rows``); ``season``: ``eval.season`` (0: none)."""
    task = state.task
    known = known_label_lag(state.window.horizon, state.window.embargo) is not None
    notes = {} if known else {"persistence": NOT_KNOWN}
    if season and task != "regression":
        notes["seasonal_naive"] = "eval.season: the seasonal naive forecast is a regression baseline"
    elif season and not known:
        notes["seasonal_naive"] = NOT_KNOWN
    x_train, y_train = train_last_rows["x_last"].double().numpy(), train_last_rows["y"].numpy()
    x_test, truth = _cat(records, "x_last"), _cat(records, "y")
    latest = _cat(records, "y_last") if known else None
    if task == "classification":
        weights = fit_last_row_model(task, x_train, y_train, len(state.classes))
        predicted = _cat(records, "probs").argmax(1)
        majority = int(np.argmax(state.class_counts))
        guesses, filled = baseline_predictions(task, latest, majority,
                                               last_row_predictions(task, weights, x_test))
        baseline_test = {f"{name}_acc": float((guess == truth).mean()) for name, guess in guesses.items()}
        metric = "test_acc"
    else:
        scaler = state.target_scaler
        weights = fit_last_row_model(task, x_train, y_train)
        units = lambda values: scaler.inverse(values)  # noqa: E731  (scaled -> target units)
        truth = units(truth).reshape(len(truth), -1)
        predicted = _cat(records, "pred").astype(np.float64).reshape(len(truth), -1)
        seasonal = units(_cat(records, "y_season")) if "y_season" in records[0] else None
        dlinear = units(_cat(records, "dlinear")) if "dlinear" in records[0] else None
        if dlinear is None:
            notes["dlinear"] = (NOT_KNOWN if not known else
                                "too few training windows reach back a whole window to fit it")
        guesses, filled = baseline_predictions(
            task, None if latest is None else units(latest).reshape(-1), float(scaler.mean[0]),
            units(last_row_predictions(task, weights, x_test)), seasonal,
            dlinear, _cat(records, "dlinear_short") if dlinear is not None else None)
        baseline_test = {}
        for name, guess in guesses.items():
            error = guess - truth
            baseline_test[f"{name}_mae"] = float(np.abs(error).mean())
            baseline_test[f"{name}_rmse"] = float((error**2).mean() ** 0.5)
        metric = "test_mae"
    notes.update(filled)
    losses = {name: window_losses(task, truth, guess) for name, guess in guesses.items()}
    skill = skill_report(task, metric, window_losses(task, truth, predicted), losses, seed,
                         _cat(records, "end_time"))  # blocks of time: every series at once
    if task == "classification":
        classes = np.asarray(state.classes, dtype=object)
        columns = {f"baseline_{name}": classes[guess] for name, guess in guesses.items()}
    else:
        columns = {f"baseline_{name}": guess.reshape(-1) for name, guess in guesses.items()}
    return baseline_test, skill, columns, notes


def pooled_skill(task: str, predictions: pd.DataFrame, group_col: str | None, seed: int = 0) -> dict:
    """``skill_report`` over every fold's test windows together; a window's loss is its error
    averaged over its forecast steps, as in a single run. The bootstrap draws blocks of
    consecutive ``window_end`` times, every series' windows at a drawn time together."""
    keys = [*([group_col] if group_col else []), "window_end"]
    # a baseline some fold left out (its note says why) is missing on those rows: it cannot be
    # compared over the pooled windows, so it is left out of the pooled skill too
    columns = ["y_pred", *(c for c in predictions.columns
                           if c.startswith("baseline_") and predictions[c].notna().all())]
    truth = predictions["y_true"]
    if task == "classification":
        errors = {c: (predictions[c] != truth).astype(float) for c in columns}
    else:
        errors = {c: (predictions[c] - truth).abs() for c in columns}
    per_window = pd.DataFrame(errors).groupby([predictions[k] for k in keys], observed=True).mean()
    times = per_window.index.get_level_values("window_end").to_numpy()
    losses = {c.removeprefix("baseline_"): per_window[c].to_numpy() for c in columns[1:]}
    metric = "test_acc" if task == "classification" else "test_mae"
    return skill_report(task, metric, per_window["y_pred"].to_numpy(), losses, seed, times=times)
