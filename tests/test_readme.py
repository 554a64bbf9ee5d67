"""The README's commands run as written (plus overrides that make them tiny), so it cannot rot."""

import math
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import make_table

README = Path(__file__).parents[1] / "README.md"
SHRINK = ["progress_bar=false", "plots=false", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
          "trainer.limit_val_batches=2"]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("seqtrain") and not _uses_a_run(line)]


def _here(arg: str) -> str:
    """What a README command asks of a cluster or a long search, on this machine and briefly: the
    jobs in this process (test_launchers.py composes the SLURM launcher and runs its local twin's
    jobs as processes), and 2 trials of a search."""
    if arg == "hydra/launcher=slurm":
        return "hydra/launcher=basic"
    return "hydra.sweeper.n_trials=2" if arg.startswith("hydra.sweeper.n_trials=") else arg


def _uses_a_run(line: str) -> bool:
    return line.split()[1:2] in (["predict"], ["export"])


def test_readme_starts_with_the_two_setup_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1)
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [
        ["make", "run"], ["make", "test"]]


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_table(400, n_series=1).to_parquet(tmp_path / "bars.parquet", index=False)
    for symbol, part in make_table(400, n_series=2).groupby("symbol"):  # the same, as a hive folder
        (tmp_path / "bars" / f"symbol={symbol}").mkdir(parents=True)
        part.drop(columns="symbol").to_parquet(tmp_path / "bars" / f"symbol={symbol}" / "part-0.parquet")
    args = [_here(a) for a in shlex.split(command)[1:] if not a.startswith("hydra.launcher.partition")]
    result = run_cli(*args, *SHRINK)
    assert result.code == 0, result.err
    # a careful user can copy every example without feeding the future in as an input
    assert "all but decide the label" not in " ".join((result.out + result.err).split())
    if "-m" in args:
        trials = [int(a.split("=")[1]) for a in args if a.startswith("hydra.sweeper.n_trials=")]
        expected = trials[0] if trials else math.prod(
            len(a.split("=", 1)[1].split(",")) for a in args if "," in a)
        runs = sorted(p.parent for p in result.run_dir.glob("*/metrics.json"))
        assert len(runs) == expected
        summary = pd.read_csv(result.run_dir / "summary.csv")  # the sweep's comparison table
        assert len(summary) == expected and summary["best_val"].notna().all()
        assert f"sweep · {expected} runs" in result.out and "★" in result.out
        assert "model=gru" in result.out or not any(a.startswith("model=") and "," in a for a in args)
    else:
        assert (result.run_dir / "metrics.json").is_file()


def test_readme_use_a_trained_model_runs_as_written(tmp_path, monkeypatch, capsys):
    """The Python examples, then the predict/export commands on the run they trained, then the
    example that runs the exported file without seqtrain: it gives seqtrain's probabilities."""
    import sys

    import numpy as np

    from seqtrain import cli

    monkeypatch.chdir(tmp_path)
    make_table(400, n_series=1).to_parquet(tmp_path / "bars.parquet", index=False)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 2
    namespace: dict = {}
    exec(blocks[0], namespace)  # noqa: S102  (the README's own code)
    run = namespace["run"]
    assert np.allclose(namespace["same"].dropna(), namespace["forecast"].dropna())
    commands = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```",
                                                                      README.read_text(), flags=re.S)
                for line in block.splitlines() if line.startswith("seqtrain") and _uses_a_run(line)]
    assert len(commands) == 5
    for command in commands:
        monkeypatch.setattr(sys, "argv", shlex.split(command.replace("RUN", str(run.path))))
        try:
            cli.main()
        except SystemExit as exc:
            raise AssertionError(f"{command}: {capsys.readouterr().err}") from exc
    exec(blocks[1], namespace)  # noqa: S102
    newest = run.predict(pd.read_parquet("bars.parquet"), newest=True)
    expected = newest[[f"prob_{c}" for c in run.data_state.classes]].to_numpy()
    np.testing.assert_allclose(namespace["probabilities"], expected, rtol=1e-4, atol=1e-5)
