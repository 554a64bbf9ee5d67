"""Folds and splits side by side (``eval.parallel=N``): a walk-forward run's folds, or a cpcv run's
splits, each trained in a fresh process of its own (``python -m seqtrain.run.worker``), at most
N at once, with ``cores // N`` torch threads each, as Hydra's joblib launcher shares a machine
out. Each process runs the very ``train`` a serial run calls, on the same config and seed, into
the same folder, so the folds' results are a serial run's (with the same threads per fold); the
pooled report is made after the last one, as before.

A fold's one-line error ends the run with that line (naming the fold): the folds still running
are stopped (Ctrl-C to each, which saves its ``last.ckpt``), those not started never start.
Ctrl-C or SIGTERM to the run does the same. Every file is written whole (``seqtrain.files``), so
a stopped or killed fold leaves no half-written file, finished folds stay as they are, and the
run's pooled files are not written at all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seqtrain.engine import distributed
from seqtrain.errors import Interrupted, SeqtrainError
from seqtrain.files import save_config
from seqtrain.run.folders import start_run_folder

log = logging.getLogger("seqtrain")

POLL_S = 0.2  # how often the running folds are looked at
STOP_S = 60  # how long a stopped fold may take to save its last.ckpt before it is killed


@dataclass
class FoldJob:
    """One fold (or split) to train in a process of its own: its name (``fold_03``), run folder,
    config and the line that announces it."""

    name: str
    folder: Path
    cfg: DictConfig
    note: str


def check_parallel(cfg: DictConfig) -> None:
    """``eval.parallel`` of a walk-forward or cpcv run, before any data is read."""
    parallel = cfg.eval.get("parallel", 1)
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise SeqtrainError(f"eval.parallel: {parallel!r}; an integer >= 1, the folds trained at once")
    if parallel == 1:
        return
    if cfg.eval.get("refit", "fresh") == "warm":
        raise SeqtrainError(f"eval.parallel={parallel}: with eval.refit=warm each fold starts from the "
                            "previous fold's best weights, so the folds run one after another; set "
                            "eval.parallel=1 or eval.refit=fresh")
    if distributed.world_size(cfg) > 1:
        raise SeqtrainError(f"eval.parallel={parallel}: each fold would start its own DDP processes on the "
                            "same cores; set eval.parallel=1 or trainer.devices=1")


def train_side_by_side(jobs: list[FoldJob], parallel: int, run_dir: Path) -> list[float]:
    """Train every job in its own process, ``parallel`` at a time, in order; each job's wall time
    in seconds. A job that fails, or an interrupt, stops the others and raises one line."""
    folder = run_dir / ".parallel"  # the jobs' files; kept only when something went wrong
    folder.mkdir(parents=True, exist_ok=True)
    threads = max(1, distributed.cores() // parallel)
    env = _environment(threads)
    unit = "splits" if jobs[0].name.startswith("split") else "folds"
    log.info("eval.parallel=%d: %d %s, %d at a time, %d torch threads each", parallel, len(jobs), unit,
             min(parallel, len(jobs)), threads)
    waiting, running, walls = list(jobs), {}, {}
    with _sigterm_as_interrupt():
        try:
            while waiting or running:
                while waiting and len(running) < parallel:
                    job = waiting.pop(0)
                    log.info("%s (in a process of its own)", job.note)
                    running[job.name] = (job, _start(job, folder, env), time.perf_counter())
                time.sleep(POLL_S)
                for name, (job, child, began) in list(running.items()):
                    if (code := child.poll()) is None:
                        continue
                    del running[name]
                    if code != 0:
                        raise _failure(job, code, folder)
                    walls[name] = time.perf_counter() - began
        except KeyboardInterrupt:
            stopped = _stop([child for _, child, _ in running.values()])
            finished = [j.name for j in jobs if j.name in walls]
            raise Interrupted(f"interrupted: {_names(finished)} finished, {_names(stopped)} stopped (each "
                              "saved checkpoints/last.ckpt if it was training), "
                              f"{_names([j.name for j in waiting])} not started; a walk-forward or cpcv "
                              "run is not resumed: start it again") from None
        except BaseException:
            _stop([child for _, child, _ in running.values()])
            raise
    shutil.rmtree(folder, ignore_errors=True)
    return [walls[job.name] for job in jobs]


def _environment(threads: int) -> dict:
    """The folds' environment: their share of the cores, and this very seqtrain first on the path
    (a source checkout beside an installed copy must not train with the other)."""
    import seqtrain

    root = str(Path(seqtrain.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "SEQTRAIN_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "PYTHONPATH": path}


def _start(job: FoldJob, folder: Path, env: dict) -> subprocess.Popen:
    """The job's process: its run folder started, its resolved config in ``.parallel/NAME.yaml``,
    its output in its run folder's train.log; in a session of its own, so that a Ctrl-C reaches
    it once, from here."""
    job_file = folder / f"{job.name}.yaml"
    (folder / f"{job.name}.error").unlink(missing_ok=True)  # an earlier try's
    save_config(job_file, OmegaConf.create({"config": OmegaConf.to_container(job.cfg, resolve=True),
                                            "run_dir": str(job.folder), "fold": job.name}))
    start_run_folder(job.folder, job.cfg)  # only now: a fold never started leaves no run folder
    with (job.folder / "train.log").open("a") as output:
        return subprocess.Popen([sys.executable, "-m", "seqtrain.run.worker", str(job_file)], env=env,
                                stdin=subprocess.DEVNULL, stdout=output, start_new_session=True)


def _failure(job: FoldJob, code: int, folder: Path) -> SeqtrainError:
    """The one line for a job whose process ended with status ``code``: its own error, else how
    it ended."""
    error = folder / f"{job.name}.error"
    if error.exists() and (text := error.read_text().strip()):
        return SeqtrainError(f"{job.name}: {text}")
    output = job.folder / "train.log"
    if code < 0:
        name = signal.Signals(-code).name
        why = " (out of memory?)" if -code == signal.SIGKILL else ""
        return SeqtrainError(f"{job.name}: its process was killed by {name}{why}; the finished folds are "
                             f"kept, its output is in {output}")
    return SeqtrainError(f"{job.name}: its process exited with status {code}; its output is in {output}")


def _stop(children: list[subprocess.Popen]) -> list[str]:
    """Every job still running asked to stop as Ctrl-C does (saving its last.ckpt), then waited
    for, killed after ``STOP_S``; the names of the jobs stopped."""
    stopped = []
    for child in children:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT)
            stopped.append(Path(child.args[-1]).stem)
    deadline = time.monotonic() + STOP_S
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # never leave a training process behind
            child.kill()
            child.wait()
    return stopped


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM to this process (``kill``, a scheduler's time limit) stops the folds as Ctrl-C does,
    instead of ending this process and leaving them training."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _names(names: list[str]) -> str:
    return ", ".join(names) or "none"
