"""Distributed data-parallel runs: seqtrain starts its own processes, one per device.

``trainer=ddp trainer.devices=N``: the process the user started is rank 0 of its node; it writes
the run's resolved config into ``RUN/.ddp/`` and starts ``N - 1`` more processes
(``python -m seqtrain.run.worker RUN/.ddp/job.yaml``) with ``LOCAL_RANK`` set, which Lightning
reads as processes created externally. Every process runs the same ``train`` on the same config
and run folder; only global rank 0 writes the folder. Started this way (rather than by Lightning
re-running the command line) a sweep's job, a walk-forward fold and a resumed run each get their
own processes, and Hydra never runs in them. Under torchrun or SLURM (``srun``), which create the
processes themselves, nothing is started here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from seqtrain.errors import SeqtrainError
from seqtrain.files import save_config

log = logging.getLogger("seqtrain")

# exit statuses of a process stopped by Ctrl-C or SIGTERM (not a failure of its own)
INTERRUPTED = (130, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGTERM)
# what seqtrain sets for the processes it starts, restored after the run
ENV_KEYS = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK")


def world_size(cfg: DictConfig) -> int:
    """Processes a run trains with: devices x nodes under a ``ddp`` strategy, else 1."""
    trainer = cfg.trainer
    if not str(trainer.get("strategy", "auto")).startswith("ddp"):
        return 1
    devices = trainer.get("devices", 1)
    per_node = len(devices) if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices) else devices
    if per_node in ("auto", -1, "-1"):
        per_node = _visible_devices(cfg)
    return int(per_node) * int(trainer.get("num_nodes", 1) or 1)


def local_world_size(cfg: DictConfig) -> int:
    return world_size(cfg) // int(cfg.trainer.get("num_nodes", 1) or 1)


def global_rank() -> int:
    """This process's rank among all of a run's processes (0 outside DDP)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ and int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1))) > 1:
            return int(os.environ[key])
    if "LOCAL_RANK" in os.environ:
        per_node = int(os.environ.get("SEQTRAIN_LOCAL_WORLD", 1))
        return int(os.environ.get("NODE_RANK", 0)) * per_node + int(os.environ["LOCAL_RANK"])
    return 0


def created_externally() -> bool:
    """Processes started by torchrun, SLURM or seqtrain itself: nothing more to start."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", 1)) > 1


@contextlib.contextmanager
def processes(cfg: DictConfig, run_dir: Path, resume_from: Path | None, warm_from: Path | None,
              pruning: dict | None = None):
    """Around one run: with ``N > 1`` devices on this node and no launcher that made the
    processes, start ranks ``1..N-1`` of this node, and when the run ends wait for them; a rank
    that fails ends the run, and its one-line error is the run's. ``pruning``: a sweep trial's
    rule (``PruneRule.to_dict``), which every rank follows."""
    local = local_world_size(cfg)
    if local <= 1 or created_externally():
        yield
        return
    folder = run_dir / ".ddp"
    job = _job_file(folder, cfg, run_dir, resume_from, warm_from, pruning)
    saved, threads = _set_environment(cfg, local)
    logs = [(folder / f"rank{i}.log").open("w") for i in range(1, local)]  # rank 0 has the console
    children = [subprocess.Popen([sys.executable, "-m", "seqtrain.run.worker", str(job)],
                                 env={**os.environ, "LOCAL_RANK": str(i)}, stdout=log_file,
                                 stderr=subprocess.STDOUT) for i, log_file in enumerate(logs, 1)]
    # no watcher thread: a rank that dies closes its connections, and rank 0's next collective
    # fails at once (gloo; NCCL's watchdog ends it), which lands below with the dead rank named
    failed = None
    try:
        yield
        for child in children:
            child.wait()
    except BaseException as exc:
        failed = exc
    finally:
        died = [(rank, child.poll()) for rank, child in enumerate(children, 1)]  # before any is stopped
        if failed is not None:  # a rank waiting in a collective for this one: its connections closed
            _destroy_process_group()  # end that wait at once (a signal is seen only after it)
        _stop(children)
        for log_file in logs:
            log_file.close()
        _destroy_process_group()
        _restore_environment(saved, threads)
    _raise_rank_failure(folder, died)
    if failed is not None:
        raise failed
    shutil.rmtree(folder, ignore_errors=True)  # nothing went wrong: nothing to look at


def _job_file(folder: Path, cfg: DictConfig, run_dir: Path, resume_from: Path | None,
              warm_from: Path | None, pruning: dict | None) -> Path:
    """``RUN/.ddp/job.yaml``: the resolved config and folders every other rank runs with (an
    earlier try's rank errors cleared)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("rank*.error"):
        stale.unlink()
    job = folder / "job.yaml"
    save_config(job, OmegaConf.create({
        "config": OmegaConf.to_container(cfg, resolve=True), "run_dir": str(run_dir),
        "resume_from": str(resume_from) if resume_from else None,
        "warm_from": str(warm_from) if warm_from else None, "pruning": pruning}))
    return job


def _set_environment(cfg: DictConfig, local: int) -> tuple[dict, int]:
    """What Lightning reads of processes created externally, and each process's share of the
    cores; returns what ``_restore_environment`` puts back."""
    saved = {k: os.environ.get(k) for k in (*ENV_KEYS, "SEQTRAIN_LOCAL_WORLD", "SEQTRAIN_THREADS")}
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.setdefault("NODE_RANK", "0")
    os.environ["WORLD_SIZE"] = str(world_size(cfg))
    os.environ["SEQTRAIN_LOCAL_WORLD"] = str(local)
    os.environ["LOCAL_RANK"] = "0"
    # the machine's cores shared out, as torchrun does: N processes x all cores would thrash them
    threads = torch.get_num_threads()
    os.environ["SEQTRAIN_THREADS"] = str(max(1, cores() // local))
    torch.set_num_threads(int(os.environ["SEQTRAIN_THREADS"]))
    return saved, threads


def _restore_environment(saved: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _stop(children: list[subprocess.Popen]) -> None:
    """Every rank still running stopped, and waited for."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:  # never leave a training process behind
            child.kill()
            child.wait()


def _raise_rank_failure(folder: Path, died: list[tuple[int, int | None]]) -> None:
    """A rank's own one-line error, else the first rank that died of something but Ctrl-C."""
    errors = [text for path in sorted(folder.glob("rank*.error")) if (text := path.read_text().strip())]
    if errors:  # a rank's own one-line error says more than the collective it broke
        raise SeqtrainError(errors[0]) from None
    for rank, code in died:  # a process that died takes rank 0 down with a broken collective
        if code and code not in INTERRUPTED:  # Ctrl-C reaches every process: rank 0 says where to resume
            raise SeqtrainError(f"trainer=ddp: training process {rank} exited with status {code}; "
                                f"its output is in {folder / f'rank{rank}.log'}") from None


def _destroy_process_group() -> None:
    """The next run (a sweep's next job, the next fold) starts a group of its own."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _visible_devices(cfg: DictConfig) -> int:
    if cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1
