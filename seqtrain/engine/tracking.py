"""Experiment tracking: the ``logger`` config group, Lightning's own loggers underneath.

``logger=csv|tensorboard`` write into the run folder; ``logger=mlflow`` writes to an MLflow
tracking store (a local SQLite database by default). Each run logs its flat resolved config as
hyperparameters, the per-step and per-epoch metrics as training goes (Lightning does that), and
at the end its test metrics, baselines and skill; MLflow also gets the run folder's plots,
metrics.json, config and best checkpoint as artifacts. The jobs of one multirun are runs of one
experiment, named after the sweep's folder.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seqtrain.errors import SeqtrainError, first_line

log = logging.getLogger("seqtrain")

LOGGERS = ("none", "csv", "tensorboard", "mlflow")
EXTRA = {"mlflow": ("mlflow", "seqtrain[mlflow]"), "tensorboard": ("tensorboard", "seqtrain[tensorboard]")}


def check_logger(cfg: DictConfig) -> None:
    """A known logger whose library is installed, or one line saying which extra to install."""
    name = _name(cfg)
    if name not in LOGGERS:
        raise SeqtrainError(f"logger: unknown logger {name!r}; choose one of {', '.join(LOGGERS)}")
    if name in EXTRA:
        module, extra = EXTRA[name]
        try:
            __import__(module)
        except ImportError:
            raise SeqtrainError(f"logger={name} needs {module}, which is not installed: "
                                f"pip install '{extra}'") from None


def make_logger(cfg: DictConfig, run_dir: Path, fold: int | None = None):
    """The Lightning logger ``cfg.logger`` names, or None (``logger=none``)."""
    name = _name(cfg)
    check_logger(cfg)
    if name == "none":
        return None
    if name == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="csv_logs", version="")
    if name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="",
                                 default_hp_metric=False)
    from lightning.pytorch.loggers import MLFlowLogger

    settings = cfg.logger
    sweep, job = _sweep_and_job()
    experiment = settings.get("experiment") or (sweep or "seqtrain")
    run_name = settings.get("run_name") or job or run_dir.name
    if fold is not None:
        run_name = f"{run_name} fold {fold}"
    try:
        return MLFlowLogger(experiment_name=str(experiment), run_name=str(run_name),
                            tracking_uri=str(settings.tracking_uri), tags={"run_dir": str(run_dir)},
                            artifact_location=settings.get("artifact_location"))
    except Exception as exc:  # a bad tracking URI or an unreachable server
        raise SeqtrainError(f"logger.tracking_uri: {settings.tracking_uri}: {first_line(exc)}") from None


def log_config(logger, cfg: DictConfig) -> None:
    """The resolved config, flat (``model.hidden_size``), as the run's hyperparameters."""
    if logger is None:
        return
    logger.log_hyperparams(flat(OmegaConf.to_container(cfg, resolve=True)))


def log_results(logger, summary: dict, run_dir: Path, step: int) -> None:
    """Baselines, skill, calibration and interval coverage beside the test metrics; for MLflow also the run
    folder's plots, metrics.json, config, predictions and best checkpoint as artifacts."""
    if logger is None:
        return
    # the test metrics themselves were logged by the test loop
    values = {f"baseline.{k}": v for k, v in (summary.get("baseline_test") or {}).items()}
    skill = summary.get("skill") or {}
    values.update(skill=skill.get("skill"), beats_best_baseline=skill.get("beats_best_baseline"))
    values.update({f"trading.{k}": v for k, v in (summary.get("trading") or {}).items()})
    calibration = summary.get("calibration") or {}
    values.update({f"calibration.{k}": calibration.get(k) for k in ("brier", "ece", "temperature")})
    for name, level in ((summary.get("intervals") or {}).get("levels") or {}).items():
        values.update({f"interval_{name}.coverage": level["coverage"],
                       f"interval_{name}.width": level["mean_width"]})
    logger.log_metrics({k: float(v) for k, v in values.items()  # numbers only (True counts as 1)
                        if isinstance(v, (int, float)) and math.isfinite(v)}, step=step)
    logger.save()
    if type(logger).__name__ != "MLFlowLogger":
        return
    client, run_id = logger.experiment, logger.run_id
    for item in ("metrics.json", "metrics.csv", "predictions.parquet", ".hydra/config.yaml"):
        if (run_dir / item).exists():
            client.log_artifact(run_id, str(run_dir / item))
    if (run_dir / "plots").is_dir():
        client.log_artifacts(run_id, str(run_dir / "plots"), "plots")
    best = run_dir / "checkpoints" / "best.ckpt"
    if best.exists():
        client.log_artifact(run_id, str(best), "checkpoints")


def flat(tree: dict, prefix: str = "") -> dict:
    """``{"model": {"name": "lstm"}}`` -> ``{"model.name": "lstm"}``; lists stay values."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _name(cfg: DictConfig) -> str:
    settings = cfg.get("logger")
    if settings is None or settings is False:
        return "none"
    return str(settings.get("name", "none")) if isinstance(settings, DictConfig) else str(settings)


def _sweep_and_job() -> tuple[str | None, str | None]:
    """The sweep's folder and the job's overrides (``model.hidden_size=64``) in a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return None, None
    job = hydra.job.override_dirname or f"job {hydra.job.num}"
    return str(hydra.sweep.dir), f"{hydra.job.num}: {job}"
