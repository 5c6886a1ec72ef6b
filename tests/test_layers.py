"""The package's import structure: one direction, down the layers, and no loops.

Every import of a slimformer module counts, including imports inside
functions: a lazy import hides a loop from Python, not from the design. The
layers are README's Development section, top to bottom.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "slimformer"

#: Top to bottom; a module may import its own layer or any layer below it.
LAYERS: list[tuple[str, ...]] = [
    ("cli", "demo"),
    ("pipeline",),
    ("recipe", "report"),
    ("methods",),
    ("zoo", "serialization"),
    ("calibration", "training", "evaluate"),
    ("data", "model"),
    ("nn", "arch", "runtime"),
    ("paths",),
    ("errors",),
]
RANK = {top: len(LAYERS) - i for i, names in enumerate(LAYERS) for top in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every slimformer module ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("slimformer."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("slimformer."):
            found.add(node.module)
            # ``from slimformer.methods.pruning import wanda`` imports the submodule wanda
            found.update(
                f"{node.module}.{a.name}" for a in node.names if _is_module(node.module, a.name)
            )
    return found


def _is_module(package: str, name: str) -> bool:
    base = SRC.parent.joinpath(*package.split("."), name)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in files} for name, path in files.items()}


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package face slimformer/__init__


def test_every_top_level_module_has_a_layer():
    tops = {_top(m) for m in _graph()} - {None}
    assert tops <= set(RANK), f"put these in a layer: {sorted(tops - set(RANK))}"


def test_no_import_runs_up_a_layer():
    upward = [
        f"{a} -> {b}"
        for a, targets in _graph().items()
        for b in targets
        if _top(a) and _top(b) and RANK[_top(b)] > RANK[_top(a)]
    ]
    assert not upward, "\n".join(sorted(upward))


def test_no_import_loops():
    graph = _graph()
    # Package faces (__init__) re-export their own submodules; the edge parent -> child
    # is the package's face, not a dependency, so it is left out of the loop check.
    edges = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in graph.items()}
    loop = _find_cycle(edges)
    assert loop is None, " -> ".join(loop or [])


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("edges, loop", [({"a": {"b"}, "b": {"a"}}, True), ({"a": {"b"}}, False)])
def test_the_loop_finder_finds_loops(edges, loop):
    assert (_find_cycle(edges) is not None) is loop
