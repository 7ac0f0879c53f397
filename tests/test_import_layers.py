"""Imports point one way.

The import graph of every module of regretflow.engine, .learners and .connectors is
read from the sources with ``ast`` (top-level and function-local imports alike; those
under ``if TYPE_CHECKING:`` never run and are left out). It must have no cycle, every
import must go to the module's own layer or one below it (:data:`LAYERS`), and a
function-local import of a regretflow module must say why it is local (a comment on
its line or just above it): a local import is for start-up time (numba, scipy, numpy,
matplotlib), never to hide a cycle.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"engine": "regretflow.engine", "learners": "regretflow.learners", "connectors": "regretflow.connectors"}

# Lowest first. A module belongs to the layer of the longest prefix that names it; it may
# import from its own layer and the ones before it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("learners", ("regretflow.learners",)),
    ("connectors", ("regretflow.connectors",)),
    ("config", ("regretflow.engine", "regretflow.engine.errors", "regretflow.engine.config", "regretflow.engine.learner_factory")),
    ("event contract", ("regretflow.engine.runtime.dead_letters", "regretflow.engine.runtime.events", "regretflow.engine.runtime.joins")),
    (
        "measures",
        (
            "regretflow.engine.evaluation",
            "regretflow.engine.tasks",
            "regretflow.engine.observability",
            "regretflow.engine.observability.metrics",
            "regretflow.engine.observability.metrics_log",
            "regretflow.engine.observability.summary_tables",
        ),
    ),
    ("runtime", ("regretflow.engine.runtime",)),
    ("tools", ("regretflow.engine.observability.live", "regretflow.engine.observability.report", "regretflow.engine.experiments")),
    ("command line", ("regretflow.engine.cli",)),
]
# imports the order alone would allow: connectors know nothing of learners
FORBIDDEN = [("regretflow.connectors", "regretflow.learners")]


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module
    line: int
    local: bool  # inside a function


def module_files() -> dict[str, Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


MODULES = module_files()


def _resolve(name: str) -> str | None:
    """The module that importing ``name`` (a module, or a name defined in one) executes."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path) -> list[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                for stmt in child.orelse:
                    visit(stmt, local)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True)
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                # ``from pkg import sub`` imports the submodule when there is one
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in child.names]
            for name in names:
                target = _resolve(name) if name.startswith("regretflow") else None
                if target and target != module:
                    found.append(Import(module, target, child.lineno, local))
            visit(child, local)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


GRAPH = [imp for module, path in MODULES.items() for imp in imports_of(module, path)]


def layer_of(module: str) -> int:
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_import_layers.py")
    return rank


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    successors: dict[str, set[str]] = {}
    for imp in edges:
        successors.setdefault(imp.source, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(successors.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(successors):
        if node not in index:
            connect(node)
    return components


def test_the_graph_is_read():
    # a parser that finds nothing would pass every other test
    assert len(MODULES) > 60
    assert Import("regretflow.engine.runtime.loop", "regretflow.engine.runtime.shard", 0, False) in {
        Import(i.source, i.target, 0, i.local) for i in GRAPH
    }


def test_no_import_cycle():
    found = cycles(GRAPH)
    described = []
    for component in found:
        members = set(component)
        edges = sorted(
            {
                f"{i.source} -> {i.target} (line {i.line}{', local' if i.local else ''})"
                for i in GRAPH
                if i.source in members and i.target in members
            }
        )
        described.append("\n  ".join(edges))
    assert not found, "import cycles (move the shared piece down a layer):\n  " + "\n\n  ".join(described)


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_point_down_the_layers():
    wrong = []
    for imp in GRAPH:
        if layer_of(imp.target) > layer_of(imp.source):
            wrong.append(
                f"{imp.source} ({LAYERS[layer_of(imp.source)][0]}) imports {imp.target} "
                f"({LAYERS[layer_of(imp.target)][0]}), line {imp.line}"
            )
        for low, high in FORBIDDEN:
            if imp.source.startswith(low) and imp.target.startswith(high):
                wrong.append(f"{imp.source} imports {imp.target}, line {imp.line}")
    assert not wrong, "imports pointing up:\n" + "\n".join(wrong)


def _commented(lines: list[str], line: int) -> bool:
    """Whether the import at ``line`` (1-based) carries a comment, or the import block above it starts with one."""
    if "#" in lines[line - 1]:
        return True
    at = line - 2
    while at >= 0 and (not lines[at].strip() or lines[at].lstrip().startswith(("from ", "import "))):
        at -= 1
    return at >= 0 and lines[at].lstrip().startswith("#")


def test_every_local_import_says_why_it_is_local():
    bare = []
    for imp in GRAPH:
        if imp.local and not _commented(MODULES[imp.source].read_text(encoding="utf-8").splitlines(), imp.line):
            bare.append(f"{MODULES[imp.source].relative_to(REPO)}:{imp.line} imports {imp.target}")
    assert not bare, (
        "function-local imports without a comment saying what start-up cost they save (or hoist them to the top):\n" + "\n".join(bare)
    )


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f():\n    from regretflow.engine import config\n", [("regretflow.engine.config", True)]),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from regretflow.engine.config import Config\n", []),
        ("from regretflow.learners import LEARNERS\n", [("regretflow.learners", False)]),
    ],
)
def test_the_reader_sees_local_imports_and_skips_type_checking_ones(tmp_path, source, expected):
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert [(i.target, i.local) for i in imports_of("regretflow.engine.probe", path)] == expected
