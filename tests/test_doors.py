"""What every door (command line, Python API, a DDP rank) shares: one rule for what a run folder
is, and one place that sets up logging."""

from __future__ import annotations

import logging

import pytest

from seqtrain.config import check_run_folder, is_run_folder
from seqtrain.console import RUN_LOG_FORMAT, logging_into, setup_logging
from seqtrain.errors import SeqtrainError


def test_a_run_folder_is_one_holding_its_saved_config(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    assert not is_run_folder(run)  # claimed, config not yet written
    not_a_run = r"^resume: .*run is not a seqtrain run folder \(no .hydra/config.yaml\)$"
    with pytest.raises(SeqtrainError, match=not_a_run):
        check_run_folder(run, "resume")
    (run / ".hydra" / "config.yaml").mkdir()  # a folder of that name is no config
    assert not is_run_folder(run)
    (run / ".hydra" / "config.yaml").rmdir()
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    assert is_run_folder(run) and check_run_folder(run, "run") == run / ".hydra" / "config.yaml"
    assert not is_run_folder(tmp_path / "missing")


@pytest.fixture
def root_logger():
    """The root logger, given back as it was (setup_logging changes it for the whole process)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_run_started_from_python_logs_into_its_folder_and_leaves_the_callers_logging(tmp_path, root_logger):
    root_logger.setLevel(logging.WARNING)
    handlers = list(root_logger.handlers)
    with logging_into(tmp_path / "train.log"):
        logging.getLogger("seqtrain").info("epoch 1")
        assert root_logger.level == logging.INFO
    logging.getLogger("seqtrain").warning("after the run")
    assert root_logger.handlers == handlers and root_logger.level == logging.WARNING
    line = (tmp_path / "train.log").read_text().strip()
    assert line.endswith("][seqtrain][INFO] epoch 1") and line.startswith("[")
    assert RUN_LOG_FORMAT.startswith("[%(asctime)s]")


def test_resume_logs_into_the_run_log_replacing_earlier_handlers(tmp_path, root_logger):
    from rich.logging import RichHandler

    earlier = logging.NullHandler()
    root_logger.addHandler(earlier)
    setup_logging(logging.INFO, run_log=tmp_path / "train.log")
    assert earlier not in root_logger.handlers and root_logger.level == logging.INFO
    assert [type(h) for h in root_logger.handlers] == [RichHandler, logging.FileHandler]
    logging.getLogger("seqtrain").debug("not shown")
    logging.getLogger("seqtrain").info("resumed at epoch 3")
    root_logger.handlers[1].flush()
    assert (tmp_path / "train.log").read_text() == "resumed at epoch 3\n"
    assert logging.getLogger("lightning.pytorch").level == logging.WARNING  # library chatter kept out
    setup_logging(logging.ERROR)  # predict, export, a rank: logging already set up stays
    assert [type(h) for h in root_logger.handlers] == [RichHandler, logging.FileHandler]
