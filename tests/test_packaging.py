"""seqtrain works installed from its wheel (not only editable), from any working directory."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_wheel_carries_the_configs_and_runs_from_elsewhere(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True)
    (wheel,) = wheels.glob("seqtrain-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "seqtrain/conf/config.yaml" in names and "seqtrain/conf/model/lstm.yaml" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "seqtrain = seqtrain.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import sys, seqtrain, seqtrain.cli as cli; "
        f"assert seqtrain.__file__.startswith({str(site)!r}), seqtrain.__file__; "
        "sys.argv = ['seqtrain', 'trainer=debug', 'progress_bar=false', 'data.generator.length=300', "
        "'data.seq_length=8', 'model.hidden_size=8', 'hydra.run.dir=run']; cli.main()"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((elsewhere / "run" / "metrics.json").read_text())
    assert metrics["model"]["name"] == "lstm"
