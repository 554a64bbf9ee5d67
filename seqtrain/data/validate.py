"""Input checks that turn bad data or settings into one clear error naming what to fix."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from seqtrain.errors import SeqtrainError

NAN_POLICIES = ("error", "ffill", "drop")


def check_window_settings(cfg) -> None:
    """Range checks of the window keys, before any data is read."""
    for key, minimum in (("seq_length", 1), ("horizon", 0), ("output_steps", 1), ("stride", 1),
                         ("eval_stride", 1), ("batch_size", 1), ("embargo", 0), ("num_workers", 0)):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise SeqtrainError(f"data.{key}: must be an integer >= {minimum}, got {value!r}")
    if cfg.nan_policy not in NAN_POLICIES:
        raise SeqtrainError(
            f"data.nan_policy: unknown value {cfg.nan_policy!r}; choose one of {', '.join(NAN_POLICIES)}"
        )
    if cfg.scaler not in ("standard", "none"):
        raise SeqtrainError(f"data.scaler: unknown value {cfg.scaler!r}; choose standard or none")
    split = cfg.split
    if split.get("periods") is not None:
        check_periods(split)
    elif split.val_start is None or split.test_start is None:
        for key in ("val", "test"):
            frac = split.get(key)
            if not isinstance(frac, (int, float)) or not 0 < frac < 1:
                raise SeqtrainError(f"data.split.{key}: must be a fraction in (0, 1), got {frac!r}")
        if split.val + split.test >= 1:
            raise SeqtrainError(
                f"data.split: val + test = {split.val + split.test:g} leaves no training rows; "
                "make their sum < 1"
            )


PERIOD_SPLITS = ("train", "val", "test")  # the names of data.split.periods' splits, by split id


def check_periods(split) -> None:
    """``data.split.periods``: a list of ``[first timestamp, split]``, every split present, and
    nothing else of the split's cut points set beside it."""
    periods = split.periods
    shape_ok = (not isinstance(periods, str) and hasattr(periods, "__len__") and len(periods) >= 3
                and all(not isinstance(p, str) and hasattr(p, "__len__") and len(p) == 2 for p in periods))
    if not shape_ok:
        raise SeqtrainError(f"data.split.periods: {periods!r}; a list of [first timestamp, train|val|test] "
                            "pairs in time order, e.g. [[2020-01-01,train],[2021-01-01,test],...]")
    names = [str(p[1]) for p in periods]
    wrong = next((n for n in names if n not in PERIOD_SPLITS), None)
    if wrong is not None:
        raise SeqtrainError(f"data.split.periods: split {wrong!r}; each period is train, val or test")
    missing = [n for n in PERIOD_SPLITS if n not in names]
    if missing:
        raise SeqtrainError(f"data.split.periods: no {'/'.join(missing)} period; "
                            "give each split at least one")
    clash = [k for k in ("val_start", "test_start", "train_start", "test_end") if split.get(k) is not None]
    if clash or split.get("by", "time") != "time":
        raise SeqtrainError("data.split.periods: cuts the time axis by itself; drop "
                            + (", ".join(f"data.split.{k}" for k in clash) or "data.split.by=series"))


PLAIN_NAME = re.compile(r"[\w.\-]+")  # a name that reads the same bare, in a list and on the command line


def name_text(name) -> str:
    """A column name as a message shows it: bare when plain (``ret``, ``Δprice``), else quoted
    (``'ret,1d'``, ``'sma(5)'``, ``'a b'``), so that a list of names is never ambiguous."""
    text = str(name)
    return text if PLAIN_NAME.fullmatch(text) else repr(text)


def name_list(names) -> str:
    return ", ".join(name_text(n) for n in names)


def is_numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)


def resolve_columns(schema: pa.Schema, cfg, path: str) -> tuple[str, str | None, str, list[str]]:
    """Check that the named columns exist and have usable types; default the feature list."""
    names = schema.names

    def need(key: str, column: str | None) -> None:
        if column is None:
            raise SeqtrainError(f"data.{key}: not set; name a column of {path}")
        if column not in names:
            raise SeqtrainError(
                f"data.{key}: column {column!r} not found in {path} (columns: {name_list(names)})"
                + _quote_hint(key, column, names)
            )

    need("time_col", cfg.time_col)
    if cfg.group_col is not None:
        need("group_col", cfg.group_col)
    need("target", cfg.target)
    reserved = {cfg.time_col, cfg.group_col, cfg.target}

    if cfg.features is None:
        features = [n for n in names if n not in reserved and is_numeric(schema.field(n).type)]
    else:
        features = list(cfg.features)
        for column in features:
            need("features", column)
            if column in (cfg.time_col, cfg.group_col):
                raise SeqtrainError(
                    f"data.features: {column!r} is the time or group column; remove it from the list"
                )
            if not is_numeric(schema.field(column).type):
                raise SeqtrainError(
                    f"data.features: column {column!r} is not numeric ({schema.field(column).type}); "
                    "encode it as numbers or remove it from data.features"
                )
        if len(set(features)) != len(features):
            raise SeqtrainError("data.features: a column is listed twice")
    if cfg.horizon == 0 and cfg.target in features:
        raise SeqtrainError(
            f"data.features: {cfg.target!r} is the target and data.horizon=0 treats it as a "
            "label that already looks ahead; remove it from data.features"
        )
    features = [f for f in features if f != cfg.target]
    if not features and not (cfg.target_as_input and cfg.horizon > 0):
        raise SeqtrainError(f"data.features: no numeric input column in {path}; list some")
    return cfg.time_col, cfg.group_col, cfg.target, features


def unused_columns(schema: pa.Schema, cfg) -> list[str]:
    """With ``data.features=null``: the columns left out for not being numeric, as ``name (type)``."""
    if cfg.features is not None:
        return []
    reserved = {cfg.time_col, cfg.group_col, cfg.target, *(cfg.get("static") or [])}
    return [f"{name_text(n)} ({schema.field(n).type})" for n in schema.names
            if n not in reserved and not is_numeric(schema.field(n).type)]


def _quote_hint(key: str, column: str, names: list[str]) -> str:
    """When ``column`` is a piece of a name that holds a comma (``ret`` of ``ret,1d``), the
    command line split that name: say how to quote it."""
    whole = next((n for n in names if "," in n and column in n.split(",")), None)
    if whole is None or key != "features":
        return ""
    return f"; quote names that hold commas: data.features=[{whole!r}]"


def first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_finite(name: str, key: str, values: np.ndarray, file_rows: np.ndarray) -> None:
    """Refuse NaN/inf under ``nan_policy=error`` with the count and the first file row."""
    bad = ~np.isfinite(values)
    if bad.any():
        row = file_rows[first_bad(bad)]
        raise SeqtrainError(
            f"{key}: column {name!r} has {int(bad.sum())} NaN/inf value(s), first at row {row}; "
            "clean the file or set data.nan_policy=ffill (forward-fill) or drop"
        )


def check_time_order(times, series, series_names, file_rows, time_col: str) -> None:
    """Timestamps must strictly increase within each series (rows already grouped by series)."""
    same = series[1:] == series[:-1]
    step_back = same & (times[1:] < times[:-1])
    repeat = same & (times[1:] == times[:-1])
    for mask, what, fix in (
        (step_back, "is not sorted", "sort the file or set data.sort=true"),
        (repeat, "has duplicate timestamps", "keep one row per time step in each series"),
    ):
        if mask.any():
            i = first_bad(mask) + 1
            where = f" in series {series_names[series[i]]!r}" if len(series_names) > 1 else ""
            raise SeqtrainError(
                f"data.time_col: {time_col!r} {what}{where} (row {file_rows[i]}: {times[i]}); {fix}"
            )
