"""The rules that read the configuration and the subcommands' arguments, shared by the doors,
the runs and the report: what makes a folder a run folder (its saved config), a subcommand's
``key=value`` arguments, which way a monitored metric improves, and the spellings
``trainer.precision`` accepts."""

from __future__ import annotations

from pathlib import Path

from seqtrain.errors import SeqtrainError

# a run folder is one that holds the config its run was composed from (Hydra's, or the API's copy)
RUN_CONFIG = Path(".hydra") / "config.yaml"


def is_run_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a seqtrain run (finished or not): its ``.hydra/config.yaml``."""
    return (Path(folder) / RUN_CONFIG).is_file()


def check_run_folder(folder: str | Path, key: str) -> Path:
    """``folder``'s saved config file; one line naming ``key`` when ``folder`` is no run folder."""
    if not is_run_folder(folder):
        raise SeqtrainError(f"{key}: {folder} is not a seqtrain run folder (no .hydra/config.yaml)")
    return Path(folder) / RUN_CONFIG

# accepted spellings -> Lightning's; fp16 on GPU uses a loss scaler (Lightning's 16-mixed)
PRECISIONS = {"32": "32-true", "32-true": "32-true", "64": "64-true", "64-true": "64-true",
              "16": "16-mixed", "16-mixed": "16-mixed", "bf16": "bf16-mixed",
              "bf16-mixed": "bf16-mixed"}

# metrics for which a larger value is better; every other monitored value (loss, mae, rmse) is
# better smaller
HIGHER_IS_BETTER = ("acc", "f1", "auroc")


def monitor_mode(monitor: str, mode: str) -> str:
    """``mode`` (``min``/``max``) for the monitored ``val_*`` metric; ``auto``: from its name."""
    if mode == "auto":
        return "max" if monitor.removeprefix("val_") in HIGHER_IS_BETTER else "min"
    return mode


def monitor_and_mode(cfg) -> tuple[str, str]:
    """``early_stopping``'s monitored metric (one the task logs) and its resolved mode."""
    monitor, mode = cfg.early_stopping.monitor, cfg.early_stopping.mode
    valid = ["val_loss", *(f"val_{m}" for m in (
        ("acc", "f1", "auroc") if cfg.task == "classification" else ("mae", "rmse")))]
    if monitor not in valid:
        raise SeqtrainError(
            f"early_stopping.monitor: {monitor!r} is not logged for task={cfg.task}; "
            f"choose one of {', '.join(valid)}"
        )
    mode = monitor_mode(monitor, mode)
    if mode not in ("min", "max"):
        raise SeqtrainError(f"early_stopping.mode: {mode!r}; choose min, max or auto")
    return monitor, mode


# -- a subcommand's key=value arguments ------------------------------------------------------------

INTEGER_KEYS = ("fold", "split", "batch_size")
STREAMING = ("auto", "true", "false")


def parse_arguments(argv: list[str], keys: dict, command: str, older: dict[str, str] | None = None) -> dict:
    """``key=value`` arguments of a subcommand over ``keys``' defaults; one line for anything else.
    ``older`` maps a key's older spelling to it (still accepted, not listed; not beside the key).

    Values are taken as written, not as YAML: a path stays the string given (``#``, ``:`` or
    brackets in it included), a boolean is ``true`` or ``false`` and nothing else (``newest=flase``
    is an error, not true), an integer key takes an integer."""
    settings, older = dict(keys), older or {}
    spelled: dict[str, str] = {}  # key -> how it was written
    for arg in argv:
        written, eq, value = arg.partition("=")
        key = older.get(written, written)
        if not eq or key not in keys:
            usage = " ".join(f"{k}=..." for k in keys)
            raise SeqtrainError(f"{command}: {arg!r} is not a setting; use {usage}")
        if spelled.setdefault(key, written) != written:  # else the later one would silently decide
            raise SeqtrainError(f"{command}: {spelled[key]}= and {written}= are one setting; "
                                "give one of them")
        settings[key] = _setting(command, key, value, keys[key], written)
    return settings


def _setting(command: str, key: str, value: str, default, written: str):
    """``key``'s value, checked; a bad one is one line naming the key as ``written``."""
    if isinstance(default, bool):
        if value.lower() not in ("true", "false"):
            raise SeqtrainError(f"{command}: {written}={value!r}; choose true or false")
        return value.lower() == "true"
    if key in INTEGER_KEYS:
        try:
            number = int(value)
        except ValueError:
            raise SeqtrainError(f"{command}: {written}={value!r}; an integer"
                                + (" >= 1" if key == "batch_size" else "")) from None
        least = 1 if key == "batch_size" else 0
        if number < least:
            raise SeqtrainError(f"{command}: {written}={number}; an integer >= {least}")
        return number
    if key == "streaming":
        if value.lower() not in STREAMING:
            raise SeqtrainError(f"{command}: {written}={value!r}; choose auto, true or false")
        return value.lower()
    if not value and default is not None:  # ckpt=, device=: a key with a default takes a value
        raise SeqtrainError(f"{command}: {written}= is empty; give a value (default {default})")
    return value or None  # a path or a name, as written
