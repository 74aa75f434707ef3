"""The import graph of the `vision` package: no cycles, and the engine's boundary holds.

Read from the source with `ast`, so imports inside functions count too (a lazy import that closes
a circle is still a circle a reader has to untangle). Imports under `if TYPE_CHECKING:` do not
count: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = "vision"


def _modules(root: Path) -> dict[str, Path]:
    modules = {}
    for path in (root / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def _imported_names(module: str, path: Path) -> set[str]:
    """Every absolute name `module` imports: modules, or module.attribute for `from` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skipped = _type_checking_nodes(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a.b import c` names a.b.c: the module c, or the attribute c of a.b.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """module → the `vision` modules it imports (a name resolved to its longest known module)."""
    modules = _modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = {resolve(name) for name in _imported_names(module, path) if name.split(".")[0] == PACKAGE}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_vision_package_has_no_import_cycle():
    graph = import_graph(REPO_ROOT)
    assert "vision.runners.loop" in graph and "vision.services.jobs" in graph  # the graph was read
    assert cycles(graph) == []


def test_a_cycle_is_found(tmp_path: Path):
    # The checker itself: services.jobs → tasks (inside a function) → services.jobs is a cycle.
    package = tmp_path / PACKAGE
    (package / "services").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "services" / "__init__.py").write_text("")
    (package / "services" / "jobs.py").write_text("def f():\n    from vision.tasks import run\n")
    (package / "tasks.py").write_text("from vision.services import jobs\n")
    (package / "models.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vision.tasks\n"
    )
    assert cycles(import_graph(tmp_path)) == [["vision.services.jobs", "vision.tasks"]]


def test_the_engine_imports_only_itself_and_the_shared_parameters():
    graph = import_graph(REPO_ROOT)
    outside = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith("vision.engine")
        for target in targets
        if not target.startswith("vision.engine") and target != "vision.params"
    }
    assert outside == set()
    assert graph["vision.params"] == set()


def test_the_engine_imports_no_django():
    offenders = []
    for path in (REPO_ROOT / PACKAGE / "engine").rglob("*.py"):
        names = _imported_names("vision.engine._", path)
        if any(name.split(".")[0] == "django" for name in names):
            offenders.append(str(path.relative_to(REPO_ROOT)))
    assert offenders == []
