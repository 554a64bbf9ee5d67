"""The package's floors: every import, at module level or inside a function, goes down a floor or
stays on its own, and no set of modules imports itself round in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "seqtrain"

# top to bottom; a module may import its own floor's modules and any floor below
FLOORS = [
    ("doors", ["seqtrain", "seqtrain.cli", "seqtrain.api"]),
    ("runs", ["seqtrain.run"]),
    ("engine", ["seqtrain.engine"]),
    # formats what the runs produce (tables, plots, prediction files) from plain numbers and
    # frames: it needs neither a run nor the machinery, only data's row and time helpers
    ("report", ["seqtrain.report"]),
    ("data and models", ["seqtrain.data", "seqtrain.models", "seqtrain.conf"]),
    ("basics", ["seqtrain.console", "seqtrain.config", "seqtrain.errors", "seqtrain.files"]),
]


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package, however deep its folder."""
    return {module_name(path, package): path for path in package.rglob("*.py")}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (``from seqtrain.data
    import source`` names the module ``seqtrain.data.source``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                above = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*above, *([node.module] if node.module else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target not in ("", name, "seqtrain"):  # the package's face loads first anyway
                found.add(target)
    return found


def floor_of(name: str) -> int:
    for number, (_, groups) in enumerate(FLOORS):
        if any(name == group or (group != "seqtrain" and name.startswith(group + ".")) for group in groups):
            return number
    raise AssertionError(f"{name} is on no floor: add it to FLOORS in tests/test_imports.py")


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports (``a -> b -> ... -> a``), else None."""
    done, path = set(), []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return [*path[path.index(name):], name]
        if name in done:
            return None
        path.append(name)
        for target in sorted(graph[name]):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name)
        if found:
            return found
    return None


def test_every_module_is_on_a_floor_and_no_import_runs_up():
    graph = import_graph()
    upward = [f"{name} ({FLOORS[floor_of(name)][0]}) imports {target} ({FLOORS[floor_of(target)][0]})"
              for name, targets in sorted(graph.items()) for target in sorted(targets)
              if floor_of(target) < floor_of(name)]
    assert upward == []


def test_no_import_circle():
    assert circle(import_graph()) is None


def test_the_walker_sees_imports_inside_functions_and_relative_ones(tmp_path):
    package = tmp_path / "seqtrain"
    (package / "data").mkdir(parents=True)
    (package / "data" / "source.py").write_text("def late():\n    from ..cli import main\n")
    (package / "data" / "__init__.py").write_text("from . import source\n")
    (package / "cli.py").write_text("from seqtrain.data import source\nimport seqtrain.errors\n")
    known = {"seqtrain", "seqtrain.cli", "seqtrain.data", "seqtrain.data.source", "seqtrain.errors"}
    assert imported("seqtrain.data.source", package / "data" / "source.py", known) == {"seqtrain.cli"}
    assert imported("seqtrain.data", package / "data" / "__init__.py", known) == {"seqtrain.data.source"}
    assert imported("seqtrain.cli", package / "cli.py", known) == {"seqtrain.data", "seqtrain.data.source",
                                                                   "seqtrain.errors"}
    (package / "data" / "stream").mkdir()
    (package / "data" / "stream" / "plan.py").write_text("")
    assert set(modules(package)) == {"seqtrain.cli", "seqtrain.data", "seqtrain.data.source",
                                     "seqtrain.data.stream.plan"}  # a folder two down is walked too
    assert circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert circle({"a": {"b"}, "b": set()}) is None
