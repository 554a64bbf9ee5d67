"""The network and the LightningModule for a data state: what training, prediction and export
all build from a run's config."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from seqtrain.config import monitor_and_mode
from seqtrain.engine.module import REGRESSION_LOSSES, SeqModule
from seqtrain.errors import SeqtrainError
from seqtrain.models.instance_norm import InstanceNorm
from seqtrain.models.registry import build_model, model_class
from seqtrain.models.series_inputs import SeriesInputs, category_width

log = logging.getLogger("seqtrain")


def build_module(cfg: DictConfig, data) -> SeqModule:
    """The network for the data's shapes, inside the one LightningModule."""
    loss, quantiles = _loss(cfg)
    classification = cfg.task == "classification"
    output_size = len(data.classes) if classification else len(quantiles) if loss == "quantile" else 1
    widths = static_widths(cfg, data.state)
    n_inputs = len(data.input_names) - len(widths) + sum(widths)  # code columns become vectors
    model = build_model(cfg.model.name, _model_args(cfg), n_inputs, output_size,
                        data.state.window.output_steps, len(data.known_future),
                        seq_length=data.state.window.seq_length)
    _warn_short_receptive_field(model, data.state.window.seq_length)
    if widths:
        model = SeriesInputs(model, len(data.input_names), data.state.code_columns,
                             data.state.static.cardinalities, widths, data.state.static.code_names)
    model = with_instance_norm(model, data.state, instance_norm(cfg))
    target_scale = data.target_scaler
    monitor, mode = monitor_and_mode(cfg)
    return SeqModule(
        model, cfg.task,
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        n_classes=len(data.classes) if classification else 0,
        loss=loss, quantiles=quantiles, huber_delta=cfg.huber_delta,
        class_weights=data.class_weights if cfg.class_weights else None,
        target_mean=float(target_scale.mean[0]) if target_scale else 0.0,
        target_std=float(target_scale.std[0]) if target_scale else 1.0,
        monitor=monitor, mode=mode, augment=OmegaConf.to_container(cfg.augment, resolve=True),
        codes=data.state.code_columns,
    )


def _model_args(cfg: DictConfig) -> dict:
    return {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items()
            if k not in ("name", "series_embedding")}


def series_embedding(cfg: DictConfig) -> int:
    """``model.series_embedding``: the width of the series id's learned vector (0: none)."""
    width = cfg.model.get("series_embedding", 0) or 0
    if isinstance(width, bool) or not isinstance(width, int) or width < 0:
        raise SeqtrainError(f"model.series_embedding: {width!r}; give a width (e.g. 8) or 0 for none")
    return width


def static_widths(cfg: DictConfig, state) -> list[int]:
    """The vector width of each static code column: a categorical column's by its levels, the
    series id's ``model.series_embedding``."""
    static = state.static
    widths = [category_width(len(levels) + 1) for levels in static.categorical.values()]
    return widths + ([series_embedding(cfg)] if static.series is not None else [])


def _loss(cfg: DictConfig) -> tuple[str, list[float] | None]:
    """The regression loss (``auto``: the model's own default) and, for quantile loss, the
    quantiles. Classification always uses cross-entropy."""
    if cfg.task == "classification":
        return "cross_entropy", None
    loss = cfg.loss
    if loss == "auto":
        loss = model_class(cfg.model.name).default_regression_loss
    if loss not in REGRESSION_LOSSES:
        raise SeqtrainError(
            f"loss: unknown regression loss {loss!r}; choose auto or one of {', '.join(REGRESSION_LOSSES)}"
        )
    if loss != "quantile":
        return loss, None
    quantiles = sorted(float(q) for q in cfg.quantiles)
    if 0.5 not in quantiles or not all(0 < q < 1 for q in quantiles) or len(set(quantiles)) != len(quantiles):
        raise SeqtrainError(
            f"quantiles: need distinct values in (0, 1) including 0.5 (the point forecast), got {quantiles}"
        )
    return loss, quantiles


def instance_norm(cfg: DictConfig) -> str:
    """The config's ``instance_norm`` (a run saved before the key existed had none)."""
    return cfg.get("instance_norm", "none")


def level_is_input(state) -> bool:
    """Whether the forecast is of the target's level with its history an input: where
    ``instance_norm=auto`` turns RevIN on (it won there on benchmarks/forecast_quality.py; on
    direction labels it lost, as scaling each window by its own spread hides the volatility a
    dead zone depends on)."""
    return state.target_history and state.task == "regression" and state.label == "value"


def with_instance_norm(model, state, chosen: str):
    """``model`` inside reversible instance normalisation (``chosen == "revin"``): every input
    column but calendar and known-future ones scaled per window; outputs de-normalised with the
    target's window statistics when the label is the target's value and its history an input;
    ``auto``: revin where ``level_is_input``. Static columns are left as they are too: constant
    within a window, they would all normalise to zero."""
    if chosen == "auto":
        chosen = "revin" if level_is_input(state) else "none"
    if chosen != "revin":
        return model
    static = getattr(state, "static", None)  # a constant would normalise to 0
    kept = set(state.known_future) | set(static.numeric if static else [])
    normalised = [i for i, name in enumerate(state.features) if name not in kept]
    if state.target_history:  # the last input column
        normalised.append(len(state.inputs) - 1)
    target = len(state.inputs) - 1 if level_is_input(state) else None
    if not normalised:
        log.warning("instance_norm=revin: no input column to normalise (calendar and known-future "
                    "columns are left as they are); training without it")
        return model
    to_label = (1.0, 0.0)
    if target is not None and state.target_scaler is not None:
        a, b = float(state.scaler.mean[target]), float(state.scaler.std[target])
        c, d = float(state.target_scaler.mean[0]), float(state.target_scaler.std[0])
        to_label = (b / d, (a - c) / d)
    return InstanceNorm(model, normalised, target, to_label)


def _warn_short_receptive_field(model, seq_length: int) -> None:
    field = model.summary().get("receptive_field")
    if field is None:
        return
    log.info("receptive field: %d steps", field)
    if field < seq_length:
        log.warning("receptive field %d < data.seq_length %d: the oldest %d rows of each window "
                    "cannot reach the output; add levels or widen the kernel",
                    field, seq_length, seq_length - field)
