"""A scikit-learn style estimator over time-indexed frames (``SequenceModel``): ``fit`` trains a
run by the command line's code path, ``predict`` is ``seqtrain predict`` put back on ``X``'s
index; ``forecast_scorer`` scores each forecast against the label it is for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from seqtrain.api.frames import (
    as_table,
    check_columns,
    index_columns,
    labelled_rows,
    naive_times,
    on_index,
    time_zone,
)
from seqtrain.api.runs import (
    Run,
    claim_run_dir,
    compose,
    free_run_dir,
    literal,
    override_value,
    release_run_dir,
    time_value,
    train_config,
)
from seqtrain.errors import SeqtrainError
from seqtrain.files import copy_file, write_json, write_parquet


class SequenceModel:
    """A scikit-learn estimator for a pipeline's model stage (``clone``, ``get_params``,
    ``set_params``, ``score``; fits in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``
    with ``TimeSeriesSplit``).

    ``X`` is a DataFrame of feature columns indexed by time, or by (time, series) (either
    order; column names may hold any characters; a tz-aware time index is read as UTC); ``y`` a
    Series on the same index. ``fit`` trains a run (the command line's code path) in
    ``run_dir``, or, when it is None, in a new ``outputs/DATE/TIME`` folder per fit (so clones in
    a search never share one); a ``run_dir`` that exists and is not empty is refused before
    anything is written. ``predict(X)`` gives, for every row of ``X``, the forecast made at that
    row from the window ending there; NaN where the row has too little history.

    **How y is aligned.** ``y[t]`` is the value at row ``t``, and the forecast made at row ``t``
    is for ``y[t + horizon]`` (default ``horizon=1``: the next row's ``y``). A label stage that
    already looks ahead (``y[t]`` = the next bar's direction, known only ``k`` rows after ``t``)
    is given with ``label_ahead=k``: the forecast at row ``t`` is then for ``y[t]`` itself
    (``horizon=0``) and the ``k`` rows after each split boundary are embargoed
    (``data.embargo=k``), so that no training label reads into the validation or test rows; a
    ``horizon`` other than 0, or an embargo under ``k``, beside it is refused. The last ``k`` rows
    of each series may have no label yet (``close.shift(-1)`` ends in NaN): fit leaves those rows
    out; any other missing label is refused.

    Settings: ``model`` (lstm, gru, tcn, ...); ``task``; ``seq_length``, ``horizon``,
    ``output_steps``, ``batch_size``, ``max_epochs``, ``lr``, ``seed``, ``embargo``, ...
    (``TRAINING_KEYS``); any other keyword is a model argument (``hidden_size=128``), and
    every one is a parameter for ``set_params`` and a grid. ``overrides`` adds raw config
    overrides (``["scheduler=cosine"]``; ``["data.static=[sector]"]``: columns of ``X`` constant
    per series, text ones too, with ``series_embedding=8`` a vector per series). The target's own
    history is not an input unless ``target_as_input=True`` (then ``X`` at predict time must hold
    it as a column named like ``y``).

    Without ``X_val``, the rows of ``X`` are split chronologically as by the command line
    (``split_val``, ``split_test`` shares); with it, ``X_val``'s earlier half validates (early
    stopping, best checkpoint) and its later half is the held-out test of the run's report.

    Fitted attributes: ``run_`` (the ``Run``: metrics, data state, folder), ``classes_``
    (classification), ``feature_names_in_``, ``n_features_in_``, ``index_names_``, ``target_``,
    ``time_zone_`` (the zone of a tz-aware training index, else None).
    """

    TRAINING_KEYS = {"seq_length": "data.seq_length", "horizon": "data.horizon",
                     "output_steps": "data.output_steps", "batch_size": "data.batch_size",
                     "max_epochs": "trainer.max_epochs", "lr": "optim.lr", "seed": "seed",
                     "target_as_input": "data.target_as_input", "split_val": "data.split.val",
                     "split_test": "data.split.test", "precision": "trainer.precision",
                     "progress_bar": "progress_bar", "plots": "plots", "patience": "early_stopping.patience",
                     "embargo": "data.embargo"}
    _NAMED = ("model", "task", "run_dir", "overrides", "target_as_input", "label_ahead")
    _PENDING = ["data.path=pending", "data.target=pending"]  # required keys fit sets once composed

    def __init__(self, model: str = "lstm", task: str = "classification", run_dir: str | Path | None = None,
                 overrides: list[str] | None = None, target_as_input: bool = False,
                 label_ahead: int | None = None, **settings):
        # scikit-learn's rule: store every argument as given; all checking happens in fit
        self.model, self.task, self.run_dir, self.overrides = model, task, run_dir, overrides
        self.target_as_input, self.label_ahead = target_as_input, label_ahead
        self._settings = dict(settings)

    def __getattr__(self, name: str):
        settings = self.__dict__.get("_settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"SequenceModel({args})"

    def get_params(self, deep: bool = True) -> dict:
        return {**{name: getattr(self, name) for name in self._NAMED}, **self._settings}

    def set_params(self, **params) -> SequenceModel:
        """Change parameters (named ones, or settings and model arguments, new ones too)."""
        for key, value in params.items():
            if key in self._NAMED:
                setattr(self, key, value)
            elif key.isidentifier() and not key.startswith("_") and not hasattr(type(self), key):
                self._settings[key] = value
            else:
                raise ValueError(f"set_params: {key!r} is not a parameter of SequenceModel")
        return self

    def __sklearn_tags__(self):
        """What scikit-learn asks of an estimator (imported only when scikit-learn asks)."""
        from sklearn.utils import ClassifierTags, InputTags, RegressorTags, Tags, TargetTags

        classifier = self.task == "classification"
        return Tags(estimator_type="classifier" if classifier else "regressor",
                    target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags() if classifier else None,
                    regressor_tags=None if classifier else RegressorTags(),
                    non_deterministic=True, input_tags=InputTags(allow_nan=True))

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: pd.Series, X_val: pd.DataFrame | None = None,
            y_val: pd.Series | None = None) -> SequenceModel:
        """Train a run on ``X``, ``y`` (everything checked before anything is written)."""
        from seqtrain.run.checks import check_config

        time_col, group_col = index_columns(X)
        if not isinstance(y, pd.Series):
            raise SeqtrainError(f"y: a pandas Series on X's index is needed, got {type(y).__name__}")
        target = str(y.name) if y.name is not None else "target"
        if target in map(str, X.columns):
            raise SeqtrainError(f"y: its name {target!r} is also a column of X; rename one of them")
        check_columns(X, (time_col, group_col))
        free_run_dir(self.run_dir)
        X, y = labelled_rows(X, y, "y", self.label_ahead)
        table = as_table(X, y, target)
        overrides = self._overrides()
        cfg = compose([*self._PENDING, *overrides])
        self._check_label_ahead(cfg)
        data = cfg.data
        data.target, data.time_col = literal(target), literal(time_col)
        data.group_col = literal(group_col) if group_col else None
        static = set(data.get("static") or [])  # categorical ones are not features; numeric ones join them
        data.features = [literal(str(c)) for c in X.columns if str(c) not in static]
        if X_val is not None:
            table = self._with_validation(table, X_val, y_val, target, (time_col, group_col), cfg)
        check_config(cfg)
        run_dir, created = self._claim_run_dir()
        try:
            data_path = run_dir / "data" / "train.parquet"
            data_path.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(data_path, table)
            data.path = str(data_path)
            self.run_ = train_config(cfg, overrides, run_dir)
        except SeqtrainError:
            if not (run_dir / "metrics.json").exists() and not (run_dir / "checkpoints").exists():
                release_run_dir(run_dir, created)  # refused on its data: nothing to keep, free for a retry
            raise
        self._fitted(X, target, time_col, group_col)
        return self

    def _overrides(self) -> list[str]:
        """The config overrides of the settings (column names never among them: they are set
        on the composed config, so no character in a name can be misread)."""
        overrides = [f"model={self.model}", f"task={self.task}", "data=parquet"]
        if self.label_ahead is not None:
            k = self.label_ahead
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise SeqtrainError(f"label_ahead: {k!r}; the rows after t at which y[t] is known "
                                    "(an integer >= 0), or None for a y[t] known at t")
            overrides += ["data.horizon=0", f"data.embargo={int(k)}"]
        if self.overrides is not None and not isinstance(self.overrides, (list, tuple)):
            raise SeqtrainError(f"overrides: {self.overrides!r}; a list of key=value strings, "
                                "e.g. ['scheduler=cosine']")
        settings = {"target_as_input": self.target_as_input, **self._settings}
        for key, value in settings.items():
            overrides.append(f"{self.TRAINING_KEYS.get(key, f'model.{key}')}={override_value(value)}")
        return [*overrides, *(self.overrides or [])]

    def _claim_run_dir(self) -> tuple[Path, bool]:
        """This fit's run folder, claimed (``claim_run_dir``), and whether the fit made it."""
        return claim_run_dir(self.run_dir)

    def _check_label_ahead(self, cfg: DictConfig) -> None:
        k = self.label_ahead
        if k is None:
            return
        if cfg.data.horizon != 0:
            raise SeqtrainError(f"label_ahead={k}: y[t] already looks {k} rows ahead, so it is forecast at "
                                f"t itself (horizon 0), not data.horizon={cfg.data.horizon}; drop horizon")
        if cfg.data.embargo < k:
            raise SeqtrainError(f"label_ahead={k}: needs data.embargo >= {k} (each y[t] reads {k} rows "
                                f"ahead), not {cfg.data.embargo}; drop embargo")

    def _with_validation(self, table: pd.DataFrame, X_val, y_val, target: str, index: tuple,
                         cfg: DictConfig) -> pd.DataFrame:
        """``table`` followed by the validation rows, their split set on ``cfg``."""
        if y_val is None or not isinstance(y_val, pd.Series):
            raise SeqtrainError("fit: X_val given without y_val (a Series on X_val's index)")
        if index_columns(X_val) != index:
            raise SeqtrainError(f"X_val: indexed by {index_columns(X_val)}; index it as X is, by {index}")
        X_val, y_val = labelled_rows(X_val, y_val, "y_val", self.label_ahead)
        val, time_col = as_table(X_val, y_val.rename(target), target), index[0]
        times = np.unique(val[time_col].to_numpy())
        if len(times) < 2 or times[0] <= table[time_col].to_numpy().max():
            raise SeqtrainError("fit: X_val must follow X in time (every X_val row after the last "
                                "X row), with at least two timestamps")
        cfg.data.split.val_start = time_value(times[0])
        cfg.data.split.test_start = time_value(times[len(times) // 2])
        return pd.concat([table, val], ignore_index=True)

    def _fitted(self, X: pd.DataFrame, target: str, time_col: str, group_col: str | None) -> None:
        self.index_names_ = [time_col, *([group_col] if group_col else [])]
        self.target_ = target
        self.time_zone_ = time_zone(X)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        classes = self.run_.data_state.classes if self.run_.data_state is not None else None
        if self.task == "classification" and classes is not None:
            self.classes_ = np.asarray(classes)

    # -- predicting -----------------------------------------------------------------------------

    def _run(self) -> Run:
        run = self.__dict__.get("run_")
        if run is None:
            raise SeqtrainError("predict: the model is not fitted; call fit first")
        run.refuse_many_models("seqtrain.load(model.run_.path).folds[-1]",
                               "one of seqtrain.load(model.run_.path).splits")
        return run

    def _forecasts(self, X: pd.DataFrame, y: pd.Series | None = None) -> pd.DataFrame:
        """The run's predictions on ``X`` (its time index as UTC-naive times; with ``y``, the
        truth beside them)."""
        run = self._run()
        time_col, group_col = index_columns(X)
        state = run.data_state
        if (time_col, group_col) != (state.time_col, state.group_col):
            raise SeqtrainError(f"X: indexed by {time_col!r}, {group_col!r}; the model was fit on "
                                f"{state.time_col!r}, {state.group_col!r}")
        zone = time_zone(X)
        if (zone is None) != (self.time_zone_ is None):
            fitted = f"tz-aware ({self.time_zone_})" if self.time_zone_ else "tz-naive"
            raise SeqtrainError(f"X: its time index is {'tz-aware (' + zone + ')' if zone else 'tz-naive'} "
                                f"but the model was fit on {fitted} times; give times of the same kind")
        frame = naive_times(X).reset_index()
        frame.columns = [str(c) for c in frame.columns]
        if y is not None:
            if not isinstance(y, pd.Series) or not X.index.equals(y.index):
                raise SeqtrainError("y: a pandas Series on X's index is needed")
            frame[self.target_] = y.to_numpy()
        if not self._has_window(frame, group_col):  # NaN for every row, as for any row short of history
            return pd.DataFrame(columns=["window_end", "step", *([group_col] if group_col else []), "y_pred"])
        return run.predict(frame)

    def _has_window(self, frame: pd.DataFrame, group_col: str | None) -> bool:
        """Whether some series of ``frame`` is long enough for one window (the predictor's rule)."""
        predictor = self._run().predictor()
        spec = predictor.state.window
        need = spec.rows if predictor.needs_label_rows else spec.history
        sizes = frame.groupby(group_col).size() if group_col else pd.Series([len(frame)])
        return bool(len(frame)) and int(sizes.max()) >= need

    def predict(self, X: pd.DataFrame) -> pd.Series | pd.DataFrame:
        """The point forecast (class, or value) made at each row of ``X``: a Series on ``X``'s
        index (a DataFrame with a column per step when ``output_steps > 1``); NaN where a row
        has too little history."""
        out = on_index(X, self._forecasts(X), ["y_pred"], self._run().data_state)
        return out.iloc[:, 0].rename("y_pred") if out.shape[1] == 1 else out

    def predict_proba(self, X: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities made at each row of ``X``: one column per class, on ``X``'s index."""
        if self.task != "classification":
            raise SeqtrainError("predict_proba: only for task=classification")
        forecasts = self._forecasts(X)
        columns = [c for c in forecasts.columns if c.startswith("prob_")]
        if forecasts.empty:
            columns = [f"prob_{c}" for c in self.classes_]
        out = on_index(X, forecasts, columns, self._run().data_state)
        out.columns = [c.removeprefix("prob_") for c in out.columns]
        return out

    def score(self, X: pd.DataFrame, y: pd.Series) -> float:
        """The task's metric, greater is better, on the rows of ``X`` that have a forecast and a
        known label (aligned as in ``fit``: the forecast made at row t against y[t + horizon]):
        accuracy for classification; R² for regression (scikit-learn's regressor score, over
        every step when ``output_steps > 1``). For another metric in a search pass
        ``scoring=forecast_scorer("mae")``: scikit-learn's own scorers (``"neg_mean_absolute_error"``)
        compare the forecast made at t with y[t], and fail on the NaN of rows without a window."""
        return _METRICS["accuracy" if self.task == "classification" else "r2"](*self._aligned(X, y))

    def _aligned(self, X: pd.DataFrame, y: pd.Series) -> tuple[pd.Series, pd.Series]:
        """(truth, forecast) on the rows of ``X`` that have both, the truth y[t + horizon]."""
        forecasts = self._forecasts(X, y)
        known = forecasts.dropna(subset=["y_pred", "y_true"]) if "y_true" in forecasts else forecasts[:0]
        if known.empty:
            raise SeqtrainError("score: no row of X has both a forecast and a known label; give each "
                                "series at least seq_length rows, and y beyond them")
        if self.task != "classification":
            return known["y_true"].astype(float), known["y_pred"].astype(float)
        return known["y_true"].astype(str), known["y_pred"].astype(str)

    # -- saving ---------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """The fitted model in folder ``path``: its run's config, data state, best checkpoint,
        metrics and these parameters (not the training data)."""
        run = self._run()
        path = Path(path).expanduser()
        if path.exists() and any(path.iterdir()):
            raise SeqtrainError(f"save: {path} exists and is not empty; choose a new folder")
        for name in (".hydra/config.yaml", "data_state.json", "metrics.json", "checkpoints/best.ckpt"):
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            copy_file(run.path / name, path / name, metadata=True)
        params = {k: v for k, v in self.get_params().items() if k != "run_dir"}
        fitted = {"index_names": self.index_names_, "target": self.target_, "time_zone": self.time_zone_,
                  "features": list(self.feature_names_in_)}
        write_json(path / "sequence_model.json", {"params": params, "fitted": fitted}, default=_json_value)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SequenceModel:
        path = Path(path).expanduser()
        saved = path / "sequence_model.json"
        if not saved.exists():
            raise SeqtrainError(f"load: {path} holds no saved SequenceModel (no sequence_model.json)")
        info = json.loads(saved.read_text())
        if "params" not in info:  # saved before parameters were recorded whole
            info = {"params": {"model": info["model"], "task": info["task"], "overrides": info["overrides"],
                               **info["settings"]},
                    "fitted": {"index_names": info["index_names"], "time_zone": None}}
        model = cls(**info["params"])
        model.run_ = Run(path)
        fitted, state = info["fitted"], model.run_.data_state
        model.index_names_, model.time_zone_ = fitted["index_names"], fitted["time_zone"]
        model.target_ = fitted.get("target", state.target)
        model.feature_names_in_ = np.asarray(fitted.get("features", []), dtype=object)
        model.n_features_in_ = len(model.feature_names_in_)
        if model.task == "classification" and state.classes is not None:
            model.classes_ = np.asarray(state.classes)
        return model


def _r2(true: pd.Series, pred: pd.Series) -> float:
    true, pred = true.to_numpy(float), pred.to_numpy(float)
    spread = float(((true - true.mean()) ** 2).sum())
    residual = float(((true - pred) ** 2).sum())
    return 1.0 - residual / spread if spread > 0 else (1.0 if residual == 0 else 0.0)


# greater is better, as scikit-learn's scorers: errors negated
_METRICS = {"accuracy": lambda true, pred: float((true == pred).mean()),
            "r2": _r2,
            "mae": lambda true, pred: -float((true - pred).abs().mean()),
            "rmse": lambda true, pred: -float(np.sqrt(((true - pred) ** 2).mean()))}


def forecast_scorer(metric: str = "mae"):
    """A scorer for ``GridSearchCV(scoring=...)`` and ``cross_val_score``: ``metric`` (mae,
    rmse: negated, as scikit-learn's ``neg_*``; accuracy; r2) on the rows ``score`` uses, each
    forecast against the label it is for (y[t + horizon]). scikit-learn's own scorers compare
    the forecast made at row t with y[t], and raise on the NaN of rows with too little history.

    >>> cross_val_score(model, X, y, cv=TimeSeriesSplit(3), scoring=forecast_scorer("rmse"))
    """
    if metric not in _METRICS:
        raise SeqtrainError(f"forecast_scorer: {metric!r}; one of {', '.join(_METRICS)}")

    def scorer(estimator, X: pd.DataFrame, y: pd.Series) -> float:
        if hasattr(estimator, "steps"):  # a Pipeline: its transforms, then the model
            X, estimator = estimator[:-1].transform(X), estimator[-1]
        return _METRICS[metric](*estimator._aligned(X, y))

    scorer.__name__ = f"forecast_{metric}"
    return scorer


def _json_value(value):
    """A parameter JSON cannot write as it is: numpy numbers as numbers (a loaded model refits)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist() if isinstance(value, np.ndarray) else value.item()
    return str(value)
