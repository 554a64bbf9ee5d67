"""What the user sees on the terminal and the run's log: how each door sets up logging, library
chatter kept out, an error as one line."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

# Hydra's job logging format: train.log of a run started from Python reads as the command line's
RUN_LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"


def setup_logging(level: int, run_log: Path | None = None) -> None:
    """A door's logging (Hydra sets up its own runs'), library chatter kept out. A command that
    trains into an existing run folder (resume) logs into its ``run_log`` (train.log) and, through
    rich, on the console, replacing what was set up before; any other (predict, export, a DDP
    rank) prints messages alone on stderr from ``level`` up, unless logging is set up already."""
    if run_log is None:
        logging.basicConfig(level=level, format="%(message)s")
    else:
        from rich.logging import RichHandler

        logging.basicConfig(level=level, format="%(message)s", force=True, handlers=[
            RichHandler(show_time=False, show_path=False), logging.FileHandler(run_log)])
    quiet_libraries()


@contextlib.contextmanager
def logging_into(run_log: Path) -> Iterator[None]:
    """The root logger also writing into ``run_log`` (from INFO up) while the block runs, and as
    it was afterwards: a run started from Python leaves its caller's logging alone."""
    quiet_libraries()
    handler = logging.FileHandler(run_log)
    handler.setFormatter(logging.Formatter(RUN_LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def quiet_libraries() -> None:
    """Keep library tips and chatter out of normal output; real problems still show."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning",
                 "mlflow", "alembic"):  # MLflow's store creation logs every migration
        logging.getLogger(name).setLevel(logging.WARNING)
    # "Experiment with name ... not found. Creating it.": what a first run of a sweep always does
    logging.getLogger("lightning.pytorch.loggers.mlflow").setLevel(logging.ERROR)
    for pattern in (
        ".*does not have many workers.*",
        ".*is smaller than the logging interval.*",
        ".*Checkpoint directory .* exists and is not empty.*",
        ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
        # the module's own batch transfer is meant to be used with the datamodule
        ".*You have overridden `transfer_batch_to_device` in `LightningModule`.*",
        # seqtrain's streaming dataset shards itself over workers, so its length is exact
        ".*Your `IterableDataset` has `__len__` defined.*",
        # a small validation block may lack a class: its AUROC/F1 term is 0, said once per batch
        ".*No positive samples in targets.*",
        ".*No negative samples in targets.*",
        # DDP: the gradient norm is each rank's own, the same on every rank (DDP averages the
        # gradients); losses and metrics are metric objects, reduced across ranks
        ".*when logging on epoch level in distributed setting.*",
        # torch's own internals, reached while compiling (trainer.compile)
        ".*torch.jit.script_method. is deprecated.*",
        # optuna 2.x's database storage is written for SQLAlchemy 1.4, which the sweep extra pins
        ".*Deprecated API features detected.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def one_line(message: str) -> str:
    """The user's message alone: an error raised in a DataLoader worker comes back wrapped with
    the worker's traceback, whose last line holds the original message."""
    if "Original Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    return last.split("SeqtrainError: ", 1)[-1]


def print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr, the message's one line only."""
    from rich.console import Console
    from rich.markup import escape

    message = escape(one_line(message))  # "seqtrain[mlflow]" is text, not markup
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {message}", soft_wrap=True)
