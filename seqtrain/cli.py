"""Command-line entry point: ``seqtrain [overrides]`` and ``seqtrain -m [sweep overrides]``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from seqtrain.config import check_run_folder, monitor_mode
from seqtrain.console import one_line, setup_logging
from seqtrain.console import print_error as _error
from seqtrain.console import quiet_libraries as _quiet_libraries

CONF_DIR = Path(__file__).parent / "conf"
GROUPS = ("data", "model", "trainer", "optim", "scheduler", "augment", "eval", "logger", "hparams_search")
# config groups whose options come from an optional extra: (the option's marker in Hydra's
# "could not find" message, the extra that provides it)
PLUGINS = {"hydra/sweeper/optuna": "seqtrain[sweep]", "hydra/launcher/joblib": "seqtrain[sweep]",
           "hydra/launcher/submitit": "seqtrain[slurm]"}
SLURM_LAUNCHERS = ("hydra/launcher=slurm", "hydra/launcher=submitit_slurm")


def check_launcher(argv: list[str]) -> str | None:
    """One line for a SLURM launcher on a machine without SLURM (submitit's own error is a
    traceback from deep inside the sweep), or for torchrun's processes without a shared run
    folder (each would time-stamp its own)."""
    import shutil

    if any(a in SLURM_LAUNCHERS for a in argv) and shutil.which("sbatch") is None:
        return ("hydra/launcher=slurm: no SLURM on this machine (sbatch not found); run the sweep on "
                "the cluster's login node, or try it here with hydra/launcher=submitit_local")
    started_by_torchrun = "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", 1)) > 1
    if started_by_torchrun and not any(a.startswith("hydra.run.dir=") for a in argv):
        return ("hydra.run.dir: under torchrun every process must write the same run folder; "
                "name it, e.g. hydra.run.dir=outputs/ddp-run-1")
    return None


def objective_direction(monitor: str, mode: str) -> str:
    """Optuna's direction for the monitored validation value (``hparams_search=optuna``)."""
    return "maximize" if monitor_mode(monitor, mode) == "max" else "minimize"


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("seqtrain.direction"):
        OmegaConf.register_new_resolver("seqtrain.direction", objective_direction)


def options(group: str) -> list[str]:
    """The option names of a config group, e.g. ``options("model") == ["gru", "lstm"]``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_group_choices(argv: list[str]) -> str | None:
    """One line for a ``group=option`` override that names no config, else None."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.lstrip("+~").partition("=")
        if key not in GROUPS:
            continue
        for choice in value.split(","):
            if choice and choice not in options(key):
                return f"{key}={choice}: unknown {key}; choose one of {', '.join(options(key))}"
    return None


def check_overrides(argv: list[str]) -> str | None:
    """Compose the config once before Hydra runs, so that a mistyped key or a bad value is
    one line naming it instead of Hydra's multi-line report. Sweeps are checked on their
    first value."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    args = [a for a in argv if not a.startswith("-")]
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return None  # --help, --cfg, --info ...: Hydra's own business
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as exc:  # hydra's OverrideParseException
        return f"cannot parse the overrides: {str(exc).splitlines()[0]}"
    first_values = []
    for override in parsed:
        if override.is_interval_sweep():  # a search's interval(low, high): check its low end
            value = str(override.value().start)
        elif override.is_sweep_override():
            value = next(iter(override.sweep_string_iterator()))
        else:
            value = override.get_value_element_as_str()
        first_values.append(f"{override.get_key_element()}={value}")
    try:
        with initialize_config_module("seqtrain.conf", version_base="1.3"):
            cfg = compose("config", overrides=first_values)
    except Exception as exc:  # hydra/omegaconf composition errors
        text = " ".join(str(exc).split())
        cause = " ".join(str(exc.__cause__ or "").split())
        for marker, extra in PLUGINS.items():
            if f"'{marker}" in text and "not find" in text:
                option = marker.rsplit("/", 1)[-1]
                return (f"{option} is a Hydra plugin that is not installed: pip install '{extra}'")
        if "is not in struct" in text + cause:
            key = cause.split("full_key: ")[-1].split()[0] if "full_key: " in cause else text
            return f"{key}: no such config key (to list all keys: seqtrain --cfg job)"
        return text + (f" ({cause})" if cause and cause not in text else "")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        return f"{missing[0]}: required, no default; set it, e.g. {missing[0]}=VALUE"
    return None


def record_failure(run_dir: Path, message: str) -> None:
    """``failed.json`` in a sweep job's folder: its one-line error, for the sweep summary."""
    from seqtrain.files import write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "failed.json", {"error": message}, default=None)


def share_the_cores(launcher) -> None:
    """Jobs that run side by side on one machine (``hydra/launcher=joblib``) share its cores:
    each gets ``cores // jobs`` torch threads, so that they do not oversubscribe them."""
    import torch

    from seqtrain.engine.distributed import cores as machine_cores

    if "joblib" not in str(launcher.get("_target_", "")):
        return
    cores = machine_cores()
    jobs = int(launcher.get("n_jobs") or -1)
    jobs = jobs if jobs > 0 else max(1, cores + 1 + jobs)  # joblib: -1 = every core, -2 = all but one
    torch.set_num_threads(max(1, cores // min(jobs, cores)))


def _log_optuna_through_ours() -> None:
    """Optuna's trial lines ("Trial 3 finished with value ...") through seqtrain's log handlers
    (the console and the sweep's log), not a handler of its own on stderr."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def _hydra_main():
    import hydra
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(version_base="1.3", config_path="conf", config_name="config")
    def run(cfg):
        from hydra.types import RunMode

        from seqtrain.engine.pruning import prune_rule
        from seqtrain.errors import SeqtrainError
        from seqtrain.run.train import train

        _quiet_libraries()
        hydra_cfg = HydraConfig.get()
        share_the_cores(hydra_cfg.launcher)
        sweeping = hydra_cfg.mode == RunMode.MULTIRUN
        # a search's trial judged against the other jobs of its sweep folder (hparams_search.pruner)
        pruning = prune_rule(cfg.get("hparams_search"), Path(hydra_cfg.sweep.dir)) if sweeping else None
        try:
            return train(cfg, hydra_cfg.runtime.output_dir, pruning=pruning)
        except SeqtrainError as exc:
            logging.getLogger("seqtrain").debug("failed: %s", exc)
            _error(str(exc))
            if sweeping:  # one grid point's bad value or NaN loss: the
                record_failure(Path(hydra_cfg.runtime.output_dir), one_line(str(exc)))  # sweep goes on
                return None  # no value: what the Optuna sweeper records as a failed trial
            raise SystemExit(2) from None

    return run


# what may change when a run resumes: how it trains from here and how data is loaded, never what
# the checkpoint holds (model, data columns and windows, task, loss, optimizer, schedule, seed)
RESUME_KEYS = ("trainer.", "early_stopping.", "progress_bar", "plots", "eval.", "data.num_workers",
               "data.pin_memory", "data.persistent_workers", "data.shuffle_buffer", "data.streaming",
               "data.memory_budget",
               "data.device_resident")


_MISSING = object()


def resume_overrides(cfg, overrides: list[str]):
    """``cfg`` (a run's saved config) with ``key=value`` ``overrides`` applied, refusing with one
    line a key that does not exist or that would change what the checkpoint holds."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from seqtrain.errors import SeqtrainError

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # hydra's OverrideParseException
        raise SeqtrainError(f"resume: cannot parse the overrides: {str(exc).splitlines()[0]}") from None
    for override in parsed:
        key = override.get_key_element().lstrip("+~")
        text = f"{key}={override.get_value_element_as_str()}"
        if override.is_sweep_override():
            raise SeqtrainError(f"resume: {text}: a resumed run takes one value per key, not a sweep")
        if key in GROUPS:
            raise SeqtrainError(f"resume: {text} would change what the checkpoint holds ({key}); "
                                "start a new run instead")
        adding = override.get_key_element().startswith("+") and key.startswith("trainer.")
        if not adding and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            raise SeqtrainError(f"resume: {key}: no such config key (to list all keys: seqtrain --cfg job)")
        if not key.startswith(RESUME_KEYS):
            raise SeqtrainError(
                f"resume: {text} would change what the checkpoint holds; a resumed run may change "
                "only trainer.*, early_stopping.*, progress_bar, plots and data loading (data.num_workers, "
                "data.pin_memory, data.persistent_workers, data.shuffle_buffer, data.streaming, "
                "data.memory_budget); start a new run to change the rest")
        OmegaConf.update(cfg, key, override.value(), merge=False, force_add=adding)
    return cfg


def resume(target: str, overrides: list[str]) -> None:
    """``seqtrain resume=RUN_FOLDER [key=value ...]``: continue an interrupted run in its own
    folder, from ``checkpoints/last.ckpt`` (or the checkpoint file given), with its saved config
    (overrides such as ``trainer.max_epochs=20`` may extend it)."""
    from omegaconf import OmegaConf

    from seqtrain.errors import SeqtrainError
    from seqtrain.run.train import train

    path = Path(target).expanduser()
    if path.is_file():  # a checkpoint inside RUN_FOLDER/checkpoints/
        run_dir, checkpoint = path.parent.parent, path
    else:
        run_dir, checkpoint = path, path / "checkpoints" / "last.ckpt"
    try:
        config = check_run_folder(run_dir, "resume")
        if (run_dir / "metrics.json").exists():
            raise SeqtrainError(f"resume: the run in {run_dir} already finished")
        if not checkpoint.exists():
            raise SeqtrainError(f"resume: no checkpoint {checkpoint} to continue from")
        cfg = resume_overrides(OmegaConf.load(config), overrides)
        setup_logging(logging.INFO, run_log=run_dir / "train.log")
        train(cfg, run_dir, resume_from=checkpoint)
    except SeqtrainError as exc:
        _error(str(exc))
        raise SystemExit(2) from None


def subcommand(name: str, argv: list[str]) -> None:
    """``seqtrain predict ...`` and ``seqtrain export ...``: one line for bad input, exit 2."""
    from seqtrain.errors import SeqtrainError

    setup_logging(logging.WARNING)
    try:
        if name == "predict":
            from seqtrain.run.predict import predict_command

            predict_command(argv)
        else:
            from seqtrain.run.export import export_command

            export_command(argv)
    except SeqtrainError as exc:
        _error(str(exc))
        raise SystemExit(2) from None


def main() -> None:
    _quiet_libraries()
    _register_resolvers()
    if len(sys.argv) > 1 and sys.argv[1] in ("predict", "export"):
        subcommand(sys.argv[1], sys.argv[2:])
        return
    targets = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("resume=")]
    if targets:
        resume(targets[0], [a for a in sys.argv[1:] if not a.startswith("resume=")])
        return
    problem = (check_group_choices(sys.argv[1:]) or check_overrides(sys.argv[1:])
               or check_launcher(sys.argv[1:]))
    if not problem and any(a.startswith("hparams_search=") for a in sys.argv[1:]):
        _log_optuna_through_ours()
    if problem:
        _error(problem)
        raise SystemExit(2)
    if int(os.environ.get("RANK", 0)) > 0 and "TORCHELASTIC_RUN_ID" in os.environ:
        sys.argv.append("hydra.output_subdir=null")  # torchrun: rank 0 records the run's config
    _hydra_main()()


REFUSED_RUN = {".hydra", "train.log"}  # what a run stopped before reading its data leaves


class ProtectEarlierRuns(Callback):
    """Hydra callback: refuse to start in a folder that already holds a run or a sweep.

    Hydra writes ``.hydra/`` into the run folder before the job starts, and a sweep's
    ``multirun.yaml`` and each job's ``N/.hydra/`` before its jobs start; a folder that already
    has them belongs to an earlier run or sweep, whose record would be overwritten (a job's
    config replaced beside metrics it did not produce, the sweep's summary.csv rewritten).
    """

    @staticmethod
    def _check(folder: str, key: str, marks: tuple[str, ...], what: str) -> None:
        from seqtrain.engine.distributed import global_rank

        if global_rank() != 0:  # torchrun: the other ranks share rank 0's folder
            return
        if any(next(Path(folder).glob(mark), None) is not None for mark in marks):
            _error(f"{key}: {folder} already holds a {what}; choose a new folder")
            raise SystemExit(2)

    def on_run_start(self, config, **kwargs) -> None:
        from seqtrain.engine.distributed import global_rank

        folder = Path(config.hydra.run.dir)
        if global_rank() != 0 or not folder.is_dir():
            return
        names = {p.name for p in folder.iterdir()}
        # A run refused on its settings or data leaves only its config and log: the same command,
        # mended, may start there again. train.log alone may be this very run's (Hydra's logging).
        if names <= REFUSED_RUN:
            return
        if ".hydra" in names:
            _error(f"hydra.run.dir: {folder} already holds a run; choose a new folder")
        else:  # a run writes data/, plots/, predictions.parquet, ...: other files could be lost
            _error(f"hydra.run.dir: {folder} holds other files, which a run's could replace; "
                   "choose a new or empty folder")
        raise SystemExit(2)

    def on_multirun_start(self, config, **kwargs) -> None:
        marks = ("multirun.yaml", ".hydra", "*/.hydra")  # the sweep's record, a run's, a job's
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir", marks, "sweep")


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, one table comparing its runs (and summary.csv);
    exit status 2 when any run failed (each failed run's error is in the table)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from seqtrain.report.summary import print_sweep_summary
        from seqtrain.report.sweep_overfitting import study_trials

        rows = print_sweep_summary(Path(config.hydra.sweep.dir), pbo_blocks=config.eval.get("pbo_blocks", 16),
                                   study_trials=study_trials(config.hydra.sweeper))
        failed = [row for row in rows if row.get("error")]
        if failed:
            _error(f"{len(failed)} of {len(rows)} runs failed (their errors are above and in summary.csv)")
            raise SystemExit(2)


if __name__ == "__main__":
    main()
