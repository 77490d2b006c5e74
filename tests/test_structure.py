"""The package's shape, read from its own source: no import loops between its modules, and modules short
enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "blur2clip"
MAX_LINES = 430  # "a few hundred lines": about 400, with a little room


def module_name(path: Path) -> str:
    return "blur2clip" if path.name == "__init__.py" else f"blur2clip.{path.stem}"


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports, anywhere in it (at the top or inside a function), but
    not under `if TYPE_CHECKING:` (never run). `from . import x` counts as importing module x when there
    is one, else the package itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            named = {f"{base}.{alias.name}" for alias in node.names}
            sub = named & modules
            found.update(sub)
            if base in modules and named - sub:
                found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(here)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.glob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports(p, modules) for p in paths}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of more than one module (Tarjan), as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return groups


def test_the_cycle_finder_finds_a_loop_through_a_function_level_import(tmp_path):
    """What the check below relies on: an import inside a function counts, one under TYPE_CHECKING not."""
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .c import g\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
                                   "def g():\n    from . import a\n")
    modules = {"blur2clip.a", "blur2clip.b", "blur2clip.c"}
    edges = {f"blur2clip.{p.stem}": imports(p, modules) for p in tmp_path.glob("*.py")}
    assert edges == {"blur2clip.a": {"blur2clip.b"}, "blur2clip.b": {"blur2clip.c"}, "blur2clip.c": {"blur2clip.a"}}
    assert cycles(edges) == [["blur2clip.a", "blur2clip.b", "blur2clip.c"]]
    edges["blur2clip.c"] = set()
    assert cycles(edges) == []


def test_no_import_cycles_in_the_package():
    edges = graph()
    assert "blur2clip.cli_train" in edges["blur2clip.cli"] and "blur2clip.weights" in edges["blur2clip.cli_options"]
    assert cycles(edges) == []


def test_no_module_is_longer_than_a_sitting():
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
