"""Pruning a search's trials (``hparams_search.pruner``): a trial that trails the others at the
same epoch stops early.

Hydra's Optuna sweeper runs each trial as a job and sees only the value the job returns, so the
rule runs inside the job. After each validation a callback reads the other trials' monitored
value per epoch where every job already writes it, its run folder's ``metrics.csv`` in the sweep
folder (rewritten whole after each epoch, so a trial running beside it under
``hydra/launcher=joblib`` is read as it stands, never half-written), and applies:

- ``median`` (Optuna's median rule): prune when this trial's best value so far is worse than the
  median of the finished trials' best values by the same epoch, once ``min_trials`` finished
  trials have one;
- ``halving`` (asynchronous successive halving, Li et al. 2020): at rungs of
  ``(warmup_epochs + 1) * reduction_factor**k`` epochs, go on only within the best
  ``1 / reduction_factor`` of the trials that reached the rung (any state, this one included),
  once ``min_trials`` others have.

No trial is judged in its first ``warmup_epochs`` epochs, nor at its last (stopping then saves
nothing). A pruned trial ends as an early-stopped one does: tested on its best checkpoint, its
``metrics.json`` saying ``pruned``; it returns its best value so far, the value it reached.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as L

from seqtrain.errors import SeqtrainError

log = logging.getLogger("seqtrain")

RULES = ("none", "median", "halving")


@dataclass(frozen=True)
class PruneRule:
    """``hparams_search``'s pruning keys, and the sweep folder whose trials a trial is judged by."""

    rule: str  # median | halving
    warmup_epochs: int
    min_trials: int
    reduction_factor: int
    sweep_dir: Path

    def to_dict(self) -> dict:
        """What another DDP rank's process needs to follow the same rule (its job file)."""
        return {**self.__dict__, "sweep_dir": str(self.sweep_dir)}

    @classmethod
    def from_dict(cls, saved) -> PruneRule:
        return cls(**{**saved, "sweep_dir": Path(saved["sweep_dir"])})

    def rungs_from(self, epochs: int) -> int:
        """The first halving rung (in epochs trained) at or after ``epochs``."""
        rung = self.warmup_epochs + 1
        while rung < epochs:
            rung *= self.reduction_factor
        return rung


def check_pruning(settings, scheme: str) -> None:
    """``hparams_search``'s pruning keys (``settings``; None without a search), before any data is read."""
    if settings is None or settings.get("pruner", "none") == "none":
        return
    if settings.pruner not in RULES:
        raise SeqtrainError(f"hparams_search.pruner: {settings.pruner!r}; choose median, halving or none")
    for key, low in (("warmup_epochs", 0), ("min_trials", 1), ("reduction_factor", 2)):
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SeqtrainError(f"hparams_search.{key}: {value!r}; an integer >= {low}")
    if scheme != "single":
        unit = "fold" if scheme == "walk_forward" else "split"
        raise SeqtrainError(f"hparams_search.pruner={settings.pruner}: a trial is pruned on its one training "
                            f"curve, and an eval={scheme} trial trains one per {unit}; set "
                            "hparams_search.pruner=none")


def prune_rule(settings, sweep_dir: Path) -> PruneRule | None:
    """The rule a sweep's job runs under (``settings``: ``hparams_search``, judged with the rest of
    the config by ``check_pruning``), or None."""
    if settings is None or settings.get("pruner", "none") == "none":
        return None
    return PruneRule(settings.pruner, settings.warmup_epochs, settings.min_trials, settings.reduction_factor,
                     Path(sweep_dir))


@dataclass
class Trial:
    """Another job of the sweep as its folder shows it: its state and its monitored value by
    epochs trained (1 = after the first epoch)."""

    name: str
    state: str  # complete | pruned | running
    curve: dict[int, float]

    @property
    def epochs(self) -> int:
        return max(self.curve, default=0)


def best_by(curve: dict[int, float], epochs: int, mode: str) -> float | None:
    """The best value of ``curve`` within its first ``epochs`` epochs, or None."""
    values = [v for n, v in curve.items() if n <= epochs]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


def worse(value: float, than: float, mode: str) -> bool:
    return value > than if mode == "min" else value < than


def read_curve(path: Path, monitor: str) -> dict[int, float]:
    """``metrics.csv``'s ``monitor`` column by epochs trained (its finite values only)."""
    curve = {}
    for row in csv.DictReader(io.StringIO(path.read_text(), newline="")):
        try:
            value = float(row.get(monitor) or "nan")
            epochs = int(row["epoch"]) + 1
        except (KeyError, ValueError):
            continue
        if math.isfinite(value):
            curve[epochs] = value
    return curve


def read_trial(folder: Path, monitor: str) -> Trial | None:
    """One job's folder as a ``Trial``; None where it has no curve yet or failed."""
    if (folder / "failed.json").exists() or not (folder / "metrics.csv").exists():
        return None
    state = "running"
    if (folder / "metrics.json").exists():  # written last: the curve is final
        state = "pruned" if json.loads((folder / "metrics.json").read_text()).get("pruned") else "complete"
    try:
        return Trial(folder.name, state, read_curve(folder / "metrics.csv", monitor))
    except FileNotFoundError:  # replaced between the check and the read: read it next time
        return None


def median_verdict(rule: PruneRule, own: float, epochs: int, trials: list[Trial], mode: str) -> dict | None:
    peers = [b for t in trials if t.state == "complete" and (b := best_by(t.curve, epochs, mode)) is not None]
    if len(peers) < rule.min_trials:
        return None
    threshold = statistics.median(peers)
    return {"threshold": threshold, "compared": len(peers)} if worse(own, threshold, mode) else None


def halving_verdict(rule: PruneRule, own: float, rung: int, trials: list[Trial], mode: str) -> dict | None:
    peers = [best_by(t.curve, rung, mode) for t in trials if t.epochs >= rung]
    peers = [p for p in peers if p is not None]
    if len(peers) < rule.min_trials:
        return None
    ranked = sorted([*peers, own], reverse=mode == "max")
    threshold = ranked[max(1, len(ranked) // rule.reduction_factor) - 1]  # the last one that goes on
    if not worse(own, threshold, mode):
        return None
    return {"threshold": threshold, "compared": len(peers), "rung": rung}


class PruneTrial(L.Callback):
    """Stops a sweep's trial (``trainer.should_stop``) when ``rule`` says it trails the other
    trials of its sweep folder; ``pruned`` then says when and against what. Under DDP rank 0
    reads the folder and every rank follows its verdict."""

    def __init__(self, rule: PruneRule, run_dir: Path, monitor: str, mode: str):
        self.rule, self.run_dir, self.monitor, self.mode = rule, Path(run_dir), monitor, mode
        self.curve: dict[int, float] = {}
        self.pruned: dict | None = None
        self._rung = rule.warmup_epochs + 1
        self._final: dict[str, Trial] = {}  # finished trials' records, which no longer change

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or self.pruned is not None:
            return
        epochs = trainer.current_epoch + 1
        self.curve[epochs] = float(value)
        verdict = None
        if trainer.is_global_zero and not trainer.should_stop and not _last_epoch(trainer, epochs):
            verdict = self.judge(epochs)
        if trainer.world_size > 1:
            verdict = trainer.strategy.broadcast(verdict, src=0)
        if verdict is not None:
            trainer.should_stop = True
            self.pruned = verdict
            log.info("hparams_search.pruner=%s: pruned after %d epochs (%s %.4g, best %.4g; the others' %s "
                     "%.4g)", self.rule.rule, epochs, self.monitor, verdict["value"], verdict["best"],
                     "median" if self.rule.rule == "median" else "cut", verdict["threshold"])

    def judge(self, epochs: int) -> dict | None:
        """The verdict after ``epochs`` epochs: None to go on, else what pruned it."""
        if epochs <= self.rule.warmup_epochs:
            return None
        own = best_by(self.curve, epochs, self.mode)
        if own is None:
            return None
        if self.rule.rule == "median":
            verdict = median_verdict(self.rule, own, epochs, self.others(), self.mode)
        elif epochs >= self._rung:
            rung, self._rung = self._rung, self.rule.rungs_from(epochs + 1)
            verdict = halving_verdict(self.rule, own, rung, self.others(), self.mode)
        else:
            return None
        if verdict is None:
            return None
        return {"rule": self.rule.rule, "epoch": epochs - 1, "value": self.curve[epochs], "best": own,
                **verdict}

    def others(self) -> list[Trial]:
        """The sweep's other jobs with a curve, as their folders show them now."""
        trials = []
        for folder in sorted(p for p in self.rule.sweep_dir.iterdir() if p.is_dir()):
            if folder.resolve() == self.run_dir.resolve():
                continue
            trial = self._final.get(folder.name) or read_trial(folder, self.monitor)
            if trial is None:
                continue
            if trial.state != "running":
                self._final[folder.name] = trial
            trials.append(trial)
        return trials


def _last_epoch(trainer: L.Trainer, epochs: int) -> bool:
    """Whether training ends after this epoch anyway (max_epochs, max_steps)."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    return (max_epochs is not None and 0 < max_epochs <= epochs) or (0 < max_steps <= trainer.global_step)
