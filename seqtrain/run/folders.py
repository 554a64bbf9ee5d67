"""A run folder as the commands read it and write beside it: a fold's folder started, its config,
the folder whose model a command uses (a walk-forward fold, a cpcv split), its checkpoints, and
where a command may write without losing a file (never over a run's own files or the table
being read)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seqtrain.config import check_run_folder, is_run_folder
from seqtrain.errors import SeqtrainError
from seqtrain.files import save_config


def start_run_folder(folder: Path, cfg: DictConfig) -> None:
    """A fold's or split's run folder, its config saved where predict, export and load look for it."""
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    save_config(folder / ".hydra" / "config.yaml", cfg)


def run_config(run_dir: Path) -> DictConfig:
    """The config of the run in folder ``run_dir``; one line where it is no seqtrain run."""
    return OmegaConf.load(check_run_folder(run_dir, "run"))


def checkpoint_path(run_dir: Path, ckpt: str) -> Path:
    """``best`` or ``last`` of the run's checkpoints, or a path."""
    if ckpt in ("best", "last"):
        path = run_dir / "checkpoints" / f"{ckpt}.ckpt"
        if not path.exists():
            raise SeqtrainError(f"ckpt={ckpt}: {path} not found (was the run trained with checkpointing?)")
        return path
    return Path(ckpt).expanduser()


def run_folder_holding(path: Path) -> Path | None:
    """The nearest seqtrain run folder (one with ``.hydra/config.yaml``) that is ``path`` or
    holds it, a walk-forward fold being a run folder of its own; None outside every run."""
    for folder in (path, *path.parents):
        if is_run_folder(folder):
            return folder
    return None


def place_in_run(target: Path, owner: Path) -> str:
    return "is the run folder" if target == owner else f"is inside the run folder {owner}"


def _same(a: Path, b: Path) -> bool:
    """One file under two names (symlinks, relative paths, hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(output: Path, table: Path, overwrite: bool, trained_on: Path | None = None) -> None:
    """Refuse, before any work, a prediction file that would lose another: the table being
    predicted (or a file inside it, when it is a folder of Parquet files), the run's training
    table, any file of a run folder outside its ``predictions/`` (checkpoints, metrics,
    data_state.json, the run's own predictions.parquet: never, whatever ``overwrite`` says), and
    an existing file unless ``overwrite``."""
    target = output.resolve()
    for protected, what in ((table, "the table being predicted (data.path)"),
                            (trained_on, "the table the run was trained on")):
        if protected is None:
            continue
        inside = protected.is_dir() and target.is_relative_to(protected.resolve())
        if inside or _same(output, protected):
            where = f"inside {protected}, " if inside else ""
            raise SeqtrainError(f"output: {output} is {where}{what}, which is never overwritten; "
                                "choose another file")
    owner = run_folder_holding(target)
    # the run's predictions/ folder itself is no file name: later predictions go inside it
    if owner is not None and (target == owner / "predictions"
                              or not target.is_relative_to(owner / "predictions")):
        raise SeqtrainError(f"output: {output} {place_in_run(target, owner)}, whose files are never "
                            f"overwritten; write under {owner / 'predictions'} or outside the run")
    if output.is_dir():
        raise SeqtrainError(f"output: {output} is a folder; name a file, e.g. "
                            f"output={output / 'preds.parquet'}")
    if output.exists() and not overwrite:
        raise SeqtrainError(f"output: {output} already exists; choose another file, or overwrite=true to "
                            "replace it")


def _numbered(run_dir: Path, prefix: str) -> dict[int, Path]:
    """``prefix_NN/`` run folders (a walk-forward run's folds, a cpcv run's splits) by number."""
    return {int(p.name[len(prefix):]): p for p in run_dir.glob(f"{prefix}*")
            if p.name[len(prefix):].isdigit() and (p / "data_state.json").exists()}


def model_folder(run_dir: Path, fold: int | None, command: str, split: int | None = None) -> Path:
    """The folder whose model a command uses: the run itself; for a walk-forward run (one model
    per ``fold_NN/``) fold ``fold``, by default the last (it saw the most data); for a cpcv run
    (one per ``split_NN/``, none of them the run's model) split ``split``, which must be named."""
    own = (run_dir / "data_state.json").exists()
    folds, splits = _numbered(run_dir, "fold_"), _numbered(run_dir, "split_")
    walk_forward = bool(folds) and not own
    if splits and not own:
        if fold is not None:
            raise SeqtrainError(f"{command}: fold={fold}: {run_dir} is a cpcv run (split_NN folders); "
                                "choose one with split=K")
        span = f"split={min(splits)}..{max(splits)}"
        if split is None:
            raise SeqtrainError(f"{command}: {run_dir} is a cpcv run with one model per split; name one "
                                f"with {span} (splits.csv says which groups each tested)")
        if split not in splits:
            raise SeqtrainError(f"{command}: split={split}: {run_dir} has no split_{split:02d}; {span}")
        return splits[split]
    if split is not None:
        raise SeqtrainError(f"{command}: split={split}: {run_dir} is not a cpcv run (it has no split_NN "
                            "folders); drop split=")
    if not walk_forward:
        if fold is not None:
            raise SeqtrainError(f"{command}: fold={fold}: {run_dir} is not a walk-forward run (it has no "
                                "fold_NN folders); drop fold=")
        return run_dir
    if fold is None:
        return folds[max(folds)]
    if fold not in folds:
        names = ", ".join(folds[k].name for k in sorted(folds))
        raise SeqtrainError(f"{command}: fold={fold}: {run_dir} has no fold_{fold:02d}; its folds are "
                            f"{names} (fold={min(folds)}..{max(folds)}, default the last)")
    return folds[fold]


def default_output(run_dir: Path, path: Path) -> Path:
    """``RUN/predictions/<table>.parquet``, numbered so that an earlier file is never replaced."""
    stem = path.stem or "table"
    folder = run_dir / "predictions"
    candidate, n = folder / f"{stem}.parquet", 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{stem}-{n}.parquet"
    return candidate
