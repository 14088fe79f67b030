"""The package's import graph: no cycles (module-level and function-level imports alike), and the layers
hold: ``prunetuna.spaces`` and ``prunetuna.objectives`` never reach ``prunetuna.search``.

Read with ``ast`` (nothing is imported). Imports under ``if TYPE_CHECKING:`` count too, as in
``shared/tools/layout-check``: a cycle of annotations is still a tangle to read (use a ``Protocol``).
``from prunetuna.x import y`` is an edge to ``prunetuna.x.y`` when that is a module, else to ``prunetuna.x``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "prunetuna"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in MODULES and name != module}


def import_graph() -> dict[str, set[str]]:
    return {name: _imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py")
            for name, path in MODULES.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert "prunetuna.spaces" in graph["prunetuna.objectives._costs"], "_costs imports make_permanent inside a function"
    assert "prunetuna.names" in graph["prunetuna.config"] and "prunetuna" not in graph["prunetuna.config"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (break each, e.g. by moving the shared part into its own module): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles)


def test_spaces_and_objectives_never_import_search() -> None:
    graph = import_graph()
    for layer in ("prunetuna.spaces", "prunetuna.objectives"):
        for module in (m for m in graph if m == layer or m.startswith(layer + ".")):
            reached = {m for m in _reachable(graph, module) if m == "prunetuna.search" or m.startswith("prunetuna.search.")}
            assert not reached, f"{module} imports {sorted(reached)} (directly or through other modules)"
