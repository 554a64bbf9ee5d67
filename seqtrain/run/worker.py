"""A process seqtrain started for a run: ``python -m seqtrain.run.worker JOB.yaml`` runs the same
``train`` on the job's config and folder. Either one rank of a DDP run that rank 0 started
(``seqtrain.engine.distributed.processes``, ``RUN/.ddp/job.yaml``, ``LOCAL_RANK`` set), or one fold
or split of a run with ``eval.parallel`` (``seqtrain.run.parallel``, ``RUN/.parallel/fold_NN.yaml``)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import torch
from omegaconf import OmegaConf

from seqtrain.console import RUN_LOG_FORMAT, one_line, quiet_libraries, setup_logging
from seqtrain.engine.pruning import PruneRule
from seqtrain.errors import Interrupted, SeqtrainError, first_line
from seqtrain.files import write_text
from seqtrain.run.train import train


def _exit_with_parent(graceful: bool = False) -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        if graceful:  # a fold on its own: stop as Ctrl-C stops it, saving last.ckpt
            os.kill(os.getpid(), signal.SIGINT)
        else:
            os._exit(3)  # rank 0 is gone: nothing left to train with

    threading.Thread(target=watch, daemon=True).start()


def main(job_file: str) -> None:
    job = OmegaConf.load(job_file)
    torch.set_num_threads(int(os.environ.get("SEQTRAIN_THREADS", torch.get_num_threads())))
    if job.get("fold"):
        train_fold(Path(job_file), job)
    else:
        train_rank(Path(job_file), job)


def train_rank(job_file: Path, job) -> None:
    """Rank ``LOCAL_RANK`` of a run that rank 0 started: its config, folder and checkpoints."""
    _exit_with_parent()
    setup_logging(logging.ERROR)
    cfg = job.config
    cfg.progress_bar = False  # rank 0 draws the one bar
    run_dir = Path(job.run_dir)
    rank = os.environ.get("LOCAL_RANK", "?")
    try:
        train(cfg, run_dir, resume_from=job.resume_from, quiet=True,
              warm_from=Path(job.warm_from) if job.warm_from else None,
              pruning=PruneRule.from_dict(job.pruning) if job.get("pruning") else None)
    except (Interrupted, KeyboardInterrupt):  # Ctrl-C: rank 0 tells the user where to resume from
        raise SystemExit(130) from None
    except SeqtrainError as exc:
        error = job_file.parent / f"rank{rank}.error"  # whole or absent, if rank 0 stops us midway
        write_text(error, str(exc))
        raise SystemExit(2) from None


def train_fold(job_file: Path, job) -> None:
    """One fold (or split) of an ``eval.parallel`` run: its warnings on the console, named after
    it; everything it logs in its folder's train.log; its one-line error in ``NAME.error`` beside
    the job file, for the run to report."""
    _exit_with_parent(graceful=True)
    run_dir = Path(job.run_dir)
    _fold_logging(job.fold, run_dir / "train.log")
    cfg = job.config
    cfg.progress_bar = False  # folds side by side: one bar would overwrite another
    error = job_file.with_suffix(".error")
    try:
        train(cfg, run_dir, quiet=True)
    except (Interrupted, KeyboardInterrupt):  # stopped by the run, which says what stopped
        raise SystemExit(130) from None
    except SeqtrainError as exc:
        write_text(error, one_line(str(exc)))
        raise SystemExit(2) from None
    except Exception as exc:  # a bug: its traceback into the fold's log, one line for the run
        with (run_dir / "train.log").open("a") as output:
            traceback.print_exc(file=output)
        write_text(error, f"{type(exc).__name__}: {first_line(exc)} (unexpected; the traceback is in "
                          f"{run_dir / 'train.log'})")
        raise SystemExit(1) from None


def _fold_logging(name: str, run_log: Path) -> None:
    """Warnings on stderr as ``fold_03: ...``; from INFO up into the fold's ``run_log``."""
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter(f"{name}: %(message)s"))
    record = logging.FileHandler(run_log)
    record.setFormatter(logging.Formatter(RUN_LOG_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[console, record], force=True)
    logging.captureWarnings(True)
    quiet_libraries()


if __name__ == "__main__":
    main(sys.argv[1])
