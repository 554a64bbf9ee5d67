"""Every setting that can be judged without the data, checked before any data is read: a typo
costs a second, not a table load. Each group's owner judges its own keys; a bad one is one line
naming it (``SeqtrainError``)."""

from __future__ import annotations

import inspect
import logging

import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf

from seqtrain.config import PRECISIONS, monitor_and_mode
from seqtrain.data import validate
from seqtrain.data.cases import check_case_settings
from seqtrain.data.labels import LabelSpec
from seqtrain.data.loading import parse_bytes, streaming_mode
from seqtrain.data.splits import split_by_series
from seqtrain.data.weights import SampleWeightSpec
from seqtrain.engine import distributed
from seqtrain.engine.assemble import _loss, _model_args
from seqtrain.engine.augment import Augmenter
from seqtrain.engine.calibration import check_settings
from seqtrain.engine.compiling import compile_mode
from seqtrain.engine.optim import check_optim, check_scheduler
from seqtrain.engine.pruning import check_pruning
from seqtrain.engine.tracking import check_logger
from seqtrain.engine.trainer import RESIDENT
from seqtrain.errors import SeqtrainError
from seqtrain.models.registry import MODELS, check_model_args, model_class
from seqtrain.report.sweep_overfitting import check_pbo_blocks
from seqtrain.run.cpcv import check_cpcv
from seqtrain.run.parallel import check_parallel
from seqtrain.run.walk_forward import check_walk_forward

log = logging.getLogger("seqtrain")

TASKS = ("classification", "regression")
AUDIT_MODES = ("warn", "error", "off")


def check_config(cfg: DictConfig) -> None:
    """Every setting that can be judged without the data, before any data is read, in this
    order (the first bad key is the one reported)."""
    _check_run(cfg)
    _check_labels_and_eval(cfg)
    _check_model(cfg)
    _check_training(cfg)
    _check_data(cfg)


def _check_run(cfg: DictConfig) -> None:
    """The task, the switches, the monitored value, early stopping, the loss and a search's pruning."""
    if cfg.task not in TASKS:
        raise SeqtrainError(f"task: unknown task {cfg.task!r}; choose one of {', '.join(TASKS)}")
    for key in ("plots", "progress_bar"):
        if not isinstance(cfg.get(key, True), bool):
            raise SeqtrainError(f"{key}: {cfg.get(key)!r}; true or false")
    monitor_and_mode(cfg)
    patience = cfg.early_stopping.patience
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 0):
        raise SeqtrainError(
            f"early_stopping.patience: {patience!r}; an integer >= 0, or null never to stop early")
    _loss(cfg)
    check_pruning(cfg.get("hparams_search"), cfg.eval.get("name", "single"))


def _check_labels_and_eval(cfg: DictConfig) -> None:
    """The evaluation scheme, the label and sample weights, calibration and the trading view."""
    if cfg.eval.get("name", "single") == "walk_forward":
        check_walk_forward(cfg.eval)
        check_parallel(cfg)
    elif cfg.eval.get("name", "single") == "cpcv":
        check_cpcv(cfg.eval)
        check_parallel(cfg)
    elif cfg.eval.get("name", "single") != "single":
        raise SeqtrainError(f"eval.name: {cfg.eval.name!r}; choose eval=default, eval=walk_forward "
                            "or eval=cpcv")
    label = LabelSpec.from_config(cfg.data, cfg.task)  # data.label, target_kind, dead_zone, barrier
    SampleWeightSpec.from_config(cfg.data)  # data.sample_weight, sample_weight_decay
    up_and_down = label.kind == "direction" or (label.kind == "triple_barrier" and label.barrier.side is None)
    check_settings(cfg.task, cfg.get("calibrate", "none"), cfg.eval.get("coverage", [0.8, 0.95]),
                   cfg.eval.get("sizing", "sign"), up_and_down)
    cost = cfg.eval.get("cost_bps", 0.0)
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0:
        raise SeqtrainError(f"eval.cost_bps: {cost!r}; a cost in basis points >= 0")
    check_pbo_blocks(cfg.eval.get("pbo_blocks", 16))
    season = cfg.eval.season
    if season is not None and (isinstance(season, bool) or not isinstance(season, int) or season < 1):
        raise SeqtrainError(f"eval.season: {season!r}; a period in rows >= 1 (e.g. 24 for hourly data), "
                            "or null")


def _check_model(cfg: DictConfig) -> None:
    """Instance normalisation, the model's own arguments, and what it can read."""
    if cfg.get("instance_norm", "none") not in ("auto", "revin", "none"):
        raise SeqtrainError(f"instance_norm: {cfg.instance_norm!r}; choose auto, revin or none")
    model = check_model_args(cfg.model.name, _model_args(cfg))
    if cfg.data.known_future and not model.reads_future:
        readers = ", ".join(name for name in MODELS if model_class(name).reads_future)
        log.warning("data.known_future: model=%s reads no values beyond a window's end, so %s are "
                    "ordinary inputs up to it; the models that read them at the label rows: %s",
                    cfg.model.name, ", ".join(cfg.data.known_future), readers)
    if cfg.data.pad_short and not model.respects_mask:
        raise SeqtrainError(f"data.pad_short: model={cfg.model.name} does not honour the padding mask; "
                            "set data.pad_short=false or choose another model")


def _check_training(cfg: DictConfig) -> None:
    """The optimizer and schedule, augmentation, the tracker and the trainer group."""
    check_optim(OmegaConf.to_container(cfg.optim, resolve=True))
    if cfg.optim.lr == "find" and distributed.world_size(cfg) > 1:
        raise SeqtrainError("optim.lr=find: the learning-rate finder runs in one process; find the rate "
                            "with trainer.devices=1 (it is saved in lr_find.json) and set optim.lr to it")
    check_scheduler(OmegaConf.to_container(cfg.scheduler, resolve=True))
    Augmenter(OmegaConf.to_container(cfg.augment, resolve=True))
    check_logger(cfg)
    _check_trainer_keys(cfg)
    compile_mode(cfg.trainer.get("compile"))
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise SeqtrainError(
            "trainer.accelerator: gpu requested but no CUDA GPU is visible; use trainer=default (CPU)")
    if str(cfg.trainer.precision) not in PRECISIONS:
        raise SeqtrainError(f"trainer.precision: {cfg.trainer.precision!r}; choose one of "
                            f"{', '.join(PRECISIONS)}")


def _check_trainer_keys(cfg: DictConfig) -> None:
    """Keys of the trainer group are Lightning Trainer arguments: refuse any other."""
    accepted = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", "callbacks"} | {"compile"}
    unknown = sorted(set(cfg.trainer) - accepted)
    if unknown:
        raise SeqtrainError(f"trainer.{unknown[0]}: not an argument of lightning's Trainer "
                            "(keys of the trainer group go to it unchanged)")


def _check_data(cfg: DictConfig) -> None:
    """The data group: the reader, the windows, memory, splits and the leakage audit."""
    data = cfg.data
    if data.kind not in ("parquet", "synthetic", "cases"):
        raise SeqtrainError(f"data.kind: unknown {data.kind!r}; choose parquet, synthetic or cases")
    if data.kind == "cases":
        check_case_settings(data, cfg.task, cfg.eval.get("name", "single"))
        validate.check_window_settings(_with_length(data))
    else:
        validate.check_window_settings(data)
    streaming_mode(data.streaming)
    if str(data.get("device_resident", "false")).lower() not in RESIDENT:
        raise SeqtrainError(f"data.device_resident: {data.device_resident!r}; choose auto, true or false")
    parse_bytes(data.memory_budget)
    split_by_series(data)
    if data.leakage_audit not in AUDIT_MODES:
        raise SeqtrainError(
            f"data.leakage_audit: {data.leakage_audit!r}; choose one of {', '.join(AUDIT_MODES)}")
    if not isinstance(data.leakage_threshold, (int, float)) or not 0.5 < data.leakage_threshold <= 1:
        raise SeqtrainError(f"data.leakage_threshold: {data.leakage_threshold!r}; choose a value in (0.5, 1]")
    if cfg.task == "classification" and data.output_steps != 1:
        raise SeqtrainError("data.output_steps: multi-step output is for task=regression; set it to 1")


def _with_length(data: DictConfig) -> DictConfig:
    """``data=cases``' settings with a stand-in ``seq_length`` where it is fit on the cases (null),
    for the range checks every data group shares."""
    checked = OmegaConf.to_container(data, resolve=True)
    if checked.get("seq_length") is None:
        checked["seq_length"] = 1
    return OmegaConf.create(checked)
