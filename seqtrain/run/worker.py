"""One rank of a DDP run that rank 0 started (``seqtrain.engine.distributed.processes``):
``python -m seqtrain.run.worker RUN/.ddp/job.yaml`` with ``LOCAL_RANK`` set runs the same ``train``
on rank 0's config and run folder."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from seqtrain.console import setup_logging
from seqtrain.engine.pruning import PruneRule
from seqtrain.errors import Interrupted, SeqtrainError
from seqtrain.files import write_text
from seqtrain.run.train import train


def _exit_with_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(3)  # rank 0 is gone: nothing left to train with

    threading.Thread(target=watch, daemon=True).start()


def main(job_file: str) -> None:
    """Rank ``LOCAL_RANK`` of a run that rank 0 started: its config, folder and checkpoints."""
    _exit_with_parent()
    torch.set_num_threads(int(os.environ.get("SEQTRAIN_THREADS", torch.get_num_threads())))
    setup_logging(logging.ERROR)
    job = OmegaConf.load(job_file)
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
        error = Path(job_file).parent / f"rank{rank}.error"  # whole or absent, if rank 0 stops us midway
        write_text(error, str(exc))
        raise SystemExit(2) from None


if __name__ == "__main__":
    main(sys.argv[1])
