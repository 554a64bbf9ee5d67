"""The README's commands run as written (plus overrides that make them tiny), so it cannot rot."""

import math
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import make_table

README = Path(__file__).parents[1] / "README.md"
SHRINK = ["progress_bar=false", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
          "trainer.limit_val_batches=2"]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("seqtrain")]


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
    args = shlex.split(command)[1:]
    result = run_cli(*args, *SHRINK)
    assert result.code == 0, result.err
    # a careful user can copy every example without feeding the future in as an input
    assert "all but decide the label" not in " ".join((result.out + result.err).split())
    if "-m" in args:
        expected = math.prod(len(a.split("=", 1)[1].split(",")) for a in args if "," in a)
        runs = sorted(p.parent for p in result.run_dir.glob("*/metrics.json"))
        assert len(runs) == expected
        summary = pd.read_csv(result.run_dir / "summary.csv")  # the sweep's comparison table
        assert len(summary) == expected and summary["best_val"].notna().all()
        assert "model=gru" in result.out and f"sweep · {expected} runs" in result.out
    else:
        assert (result.run_dir / "metrics.json").is_file()
