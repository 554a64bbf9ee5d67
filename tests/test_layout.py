"""The tree stays readable: every module fits on a few screens, and the run and data paths are
read as steps short enough to see whole."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "seqtrain"
MAX_FILE_LINES = 400
MAX_STEP_LINES = 60  # in run/ and data/, where a reader follows the flow


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert not long, f"split these modules by what they do: {long}"


def test_no_function_of_the_run_and_data_paths_is_over_60_lines():
    long = {}
    for folder in ("run", "data"):
        for path in (PACKAGE / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_STEP_LINES:
                        long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert not long, f"cut these into named steps: {long}"
