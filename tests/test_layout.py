"""The package's import graph: no cycles (module-level and function-level imports alike), and the layers
hold: each package imports only the packages below it in :data:`LAYERS` (``spaces`` and ``objectives`` never
reach ``search``; ``search`` never reaches ``results``, ``export`` or ``commands``).

Read with ``ast`` (nothing is imported). Imports under ``if TYPE_CHECKING:`` count too, as in
``shared/tools/layout-check``: a cycle of annotations is still a tangle to read (use a ``Protocol``).
``from prunetuna.x import y`` is an edge to ``prunetuna.x.y`` when that is a module, to the private module
that holds ``y`` when ``prunetuna.x`` exports it lazily (its ``_HOMES``), else to ``prunetuna.x``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "prunetuna"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _lazy_homes(path: Path) -> dict[str, str]:
    """name -> private module, for a package whose ``__init__`` exports lazily (``_HOMES = {module: names}``)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_HOMES" for t in node.targets):
            homes = ast.literal_eval(node.value)
            return {name: module for module, names in homes.items() for name in names}
    return {}


HOMES = {name: _lazy_homes(path) for name, path in MODULES.items() if path.name == "__init__.py"}


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
                home = HOMES.get(base, {}).get(alias.name)
                if f"{base}.{alias.name}" in MODULES:
                    found.add(f"{base}.{alias.name}")
                else:
                    found.add(f"{base}.{home}" if home else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in MODULES and name != module}


def import_graph() -> dict[str, set[str]]:
    return {
        name: _imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py")
        for name, path in MODULES.items()
    }


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
    assert "prunetuna.spaces._masks" in graph["prunetuna.objectives._costs"], (
        "_costs imports make_permanent in a function"
    )
    assert "prunetuna.config._names" in graph["prunetuna.config._sections"]
    assert "prunetuna.store._records" in graph["prunetuna.search._run"], (
        "a lazily exported name is an edge to its module"
    )
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (break each, e.g. by moving the shared part into its own module): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


# Which packages each package may import (the package root's plain modules - errors, registry, runtime,
# faults, files, sparsity - are allowed everywhere). The folder tree is the architecture: this is its order.
LAYERS: dict[str, set[str]] = {
    "device": set(),
    "config": {"device"},
    "spaces": {"config"},
    "training": {"config"},
    "objectives": {"config", "device", "spaces"},
    "workload": {"config", "training"},
    "store": {"config"},
    "allocations": {"config", "spaces", "training", "workload", "objectives"},
    "search": {"config", "device", "spaces", "training", "workload", "objectives", "store", "allocations"},
    "export": {"config", "spaces", "training", "workload", "objectives", "store", "search"},
    "results": {"config", "objectives", "store", "search"},
    "commands": {
        "config",
        "device",
        "spaces",
        "workload",
        "objectives",
        "store",
        "allocations",
        "search",
        "export",
        "results",
    },
}
ROOT_MODULES = {
    "prunetuna.errors",
    "prunetuna.registry",
    "prunetuna.runtime",
    "prunetuna.faults",
    "prunetuna.files",
    "prunetuna.sparsity",
}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and f"prunetuna.{parts[1]}" in MODULES and module not in ROOT_MODULES else None


def test_every_package_has_a_layer() -> None:
    packages = {_package(m) for m in MODULES} - {None, "cli", "__main__"}
    assert packages == set(LAYERS), (
        f"packages without a layer: {packages - set(LAYERS)}; gone: {set(LAYERS) - packages}"
    )


def test_packages_import_only_the_layers_below() -> None:
    graph = import_graph()
    wrong = []
    for module, targets in graph.items():
        own = _package(module)
        if own not in LAYERS:
            continue
        for target in targets:
            other = _package(target)
            if other is not None and other != own and other not in LAYERS[own]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "layering: " + "; ".join(sorted(wrong))


def test_spaces_and_objectives_never_import_search() -> None:
    graph = import_graph()
    for layer in ("prunetuna.spaces", "prunetuna.objectives"):
        for module in (m for m in graph if m == layer or m.startswith(layer + ".")):
            reached = {
                m for m in _reachable(graph, module) if m == "prunetuna.search" or m.startswith("prunetuna.search.")
            }
            assert not reached, f"{module} imports {sorted(reached)} (directly or through other modules)"


def test_no_private_imports_across_packages() -> None:
    wrong = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                private = any(part.startswith("_") and not part.startswith("__") for part in name.split(".")[2:])
                if name.startswith("prunetuna.") and private and _package(name) != _package(module):
                    wrong.append(f"{module} imports {name}")
    assert not wrong, "import what the package exports instead: " + "; ".join(sorted(wrong))
