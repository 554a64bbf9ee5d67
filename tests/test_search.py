"""Hyperparameter search (hparams_search=optuna): Optuna's TPE through Hydra's sweeper."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.conftest import TINY

SEARCH = ["-m", "hparams_search=optuna", *TINY]
DIRECTION = ["data.generator.name=bars", "data.target=close", "data.label=direction"]  # a trading view


def test_a_three_trial_study_ranks_its_trials_and_marks_the_best(run_cli):
    result = run_cli(*SEARCH, "hydra.sweeper.n_trials=3")
    assert result.code == 0, result.err
    summary = pd.read_csv(result.run_dir / "summary.csv")
    assert summary["job"].tolist() == [0, 1, 2] and (summary["monitor"] == "val_loss").all()
    # every trial drew its own values from the search space (the model's keys too); fixed keys
    # (model.hidden_size=16 in TINY) are left out of it
    drawn = [dict(o.split("=", 1) for o in row.split()) for row in summary["overrides"]]
    for keys in ("data.batch_size", "optim.lr", "model.num_layers", "model.dropout"):
        assert all(keys in d for d in drawn)
    assert all(d["model.hidden_size"] == "16" for d in drawn)
    assert len({d["optim.lr"] for d in drawn}) == 3
    # ranked by the objective Optuna minimised (val_loss), and Optuna's best is the summary's best
    assert sorted(summary["rank"]) == [1, 2, 3]
    assert summary.sort_values("rank")["best_val"].is_monotonic_increasing
    best = summary.loc[summary["rank"] == 1].iloc[0]
    study = yaml.safe_load((result.run_dir / "optimization_results.yaml").read_text())
    assert math.isclose(study["best_value"], best["best_val"], rel_tol=1e-6)
    assert (result.run_dir / "summary.png").stat().st_size > 0
    text = " ".join(result.out.split())
    assert f"best: job {best['job']} (val_loss" in text and f"{best['job']} ★" in text


# optuna 2's database models use declarative_base, which SQLAlchemy 1.4 warns about on import (a
# DeprecationWarning: pytest shows it, Python hides it from the CLI's users)
@pytest.mark.filterwarnings("ignore:Deprecated API features detected")
def test_the_direction_follows_the_monitor_and_a_study_resumes_from_its_database(run_cli, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [*SEARCH, "early_stopping.monitor=val_acc", f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=resumed", *DIRECTION]
    assert run_cli(*args, "hydra.sweeper.n_trials=2").code == 0
    second = run_cli(*args, "hydra.sweeper.n_trials=1")  # the same study, one trial more
    assert second.code == 0, second.err
    study = optuna.load_study(study_name="resumed", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE  # val_acc: higher is better
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    summary = pd.read_csv(second.run_dir / "summary.csv")
    assert math.isclose(study.trials[2].value, summary.loc[0, "best_val"], rel_tol=1e-6)
    # the best trial's Sharpe is deflated by the study's three trials, not the folder's one
    judged = json.loads((second.run_dir / "summary.json").read_text())
    assert judged["n_trials"] == 3 and judged["trials_from"] == "optuna study"


def test_a_failed_trial_is_recorded_and_the_study_goes_on(run_cli):
    # windows longer than any series: those trials stop with their one-line error
    result = run_cli(*SEARCH, "hydra.sweeper.n_trials=4", "data.seq_length=choice(8,5000)")
    summary = pd.read_csv(result.run_dir / "summary.csv")
    failed = summary["error"].notna() if "error" in summary else pd.Series(False, index=summary.index)
    drawn = [dict(o.split("=", 1) for o in row.split())["data.seq_length"] for row in summary["overrides"]]
    assert len(summary) == 4 and failed.tolist() == [d == "5000" for d in drawn]
    assert result.code == (2 if failed.any() else 0)
    assert summary.loc[~failed, "rank"].notna().all() and summary.loc[failed, "rank"].isna().all()
    assert "Traceback" not in result.err


WITHOUT_PLUGIN = """
import pkgutil, sys
walk, hidden = pkgutil.walk_packages, sys.argv[1]  # Hydra finds plugins walking hydra_plugins
pkgutil.walk_packages = lambda *a, **k: (m for m in walk(*a, **k) if hidden not in m[1])
from seqtrain.cli import main
sys.argv = ["seqtrain", *sys.argv[2:]]
main()
"""


@pytest.mark.parametrize(("plugin", "override", "extra"), [
    ("optuna", "hparams_search=optuna", "sweep"),
    ("joblib", "hydra/launcher=joblib", "sweep"),
    ("submitit", "hydra/launcher=submitit_slurm", "slurm"),
])
def test_a_sweep_plugin_that_is_not_installed_is_one_line(tmp_path, plugin, override, extra):
    done = subprocess.run([sys.executable, "-c", WITHOUT_PLUGIN, plugin, "-m", override, *TINY,
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    name = override.split("=")[1].split("_")[0]
    assert f"{name} is a Hydra plugin that is not installed: pip install 'seqtrain[{extra}]'" in \
        " ".join(done.stderr.split())
    assert not (tmp_path / "sweep").exists()
