"""What the user sees on the terminal: library chatter kept out, an error as one line."""

from __future__ import annotations

import logging
import warnings


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
