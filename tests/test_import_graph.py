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


# The engine is a library: nothing under vision/engine imports the platform around it.
PLATFORM = ("django", "rest_framework", "celery", "docplatform", "accounts")


def platform_imports(root: Path) -> set[tuple[str, str]]:
    """(engine module, name) for every import of the platform in vision/engine: a PLATFORM package,
    or a `vision` module outside `vision.engine`."""
    found = set()
    for module, path in _modules(root).items():
        if module != "vision.engine" and not module.startswith("vision.engine."):
            continue
        for name in _imported_names(module, path):
            top = name.split(".")[0]
            outside = top == PACKAGE and name != "vision.engine" and not name.startswith("vision.engine.")
            if top in PLATFORM or outside:
                found.add((module, name))
    return found


def test_the_engine_imports_nothing_of_the_platform():
    assert "vision.engine.contract" in _modules(REPO_ROOT)  # the engine was read
    assert platform_imports(REPO_ROOT) == set()


def test_a_platform_import_in_the_engine_is_found(tmp_path: Path):
    engine = tmp_path / PACKAGE / "engine"
    (engine / "kernels").mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (engine / "__init__.py").write_text("from .contract import X\n")
    (engine / "contract.py").write_text("X = 1\n")
    (engine / "kernels" / "__init__.py").write_text("def f():\n    from django.conf import settings\n")
    (engine / "worker.py").write_text("from ..services import jobs\nimport celery\n")
    assert platform_imports(tmp_path) == {
        ("vision.engine.kernels", "django.conf.settings"),
        ("vision.engine.worker", "vision.services.jobs"),
        ("vision.engine.worker", "celery"),
    }


# The package table (tests/import_table.py, rendered into docs/architecture.md) against the code.

TABLE_PACKAGES = ("vision", "docplatform", "accounts", "bench", "tests")


def _imports_with_scope(module: str, path: Path) -> list[tuple[str, bool]]:
    """(absolute name, inside a function?) for every import of `module`, third-party included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skipped = _type_checking_nodes(tree)
    in_function = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.extend((name, id(node) in in_function) for name in names)
    return found


def table_modules(root: Path) -> dict[str, Path]:
    modules = {}
    for top in TABLE_PACKAGES:
        for path in (root / top).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if "migrations" in parts:
                continue
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def table_violations(root: Path, rows) -> tuple[list[str], list[str]]:
    """(imports the table does not allow, modules no row owns), as readable lines."""
    from tests.import_table import EVERYTHING

    def row_of(module: str):
        best, length = None, -1
        for row in rows:
            for prefix in row.modules:
                if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                    best, length = row, len(prefix)
        return best

    def allowed(patterns, target: str) -> bool:
        return any(p == EVERYTHING or target == p or target.startswith(p + ".") for p in patterns)

    modules = table_modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    wrong, homeless = [], []
    for module, path in sorted(modules.items()):
        row = row_of(module)
        if row is None:
            if module not in TABLE_PACKAGES:
                homeless.append(module)
            continue
        for name, lazy in _imports_with_scope(module, path):
            top = name.split(".")[0]
            if top in row.forbids:
                wrong.append(f"{module} imports {name} (its row forbids {top})")
            if top not in TABLE_PACKAGES:
                continue
            target = resolve(name)
            if target is None or target == module or row_of(target) is row:
                continue
            if allowed(row.imports, target) or (lazy and allowed(row.lazy, target)):
                continue
            where = "inside a function" if lazy else "at module level"
            wrong.append(f"{module} imports {target} {where}")
    return sorted(set(wrong)), homeless


def test_every_import_follows_the_package_table():
    from tests.import_table import ROWS

    wrong, homeless = table_violations(REPO_ROOT, ROWS)
    assert "vision.runners.loop" in table_modules(REPO_ROOT)  # the tree was read
    assert wrong == []
    assert homeless == []


def test_the_table_checker_finds_a_wrong_arrow(tmp_path: Path):
    from tests.import_table import Row

    rows = (
        Row(modules=("vision.apis",), owns="", imports=("vision.services",)),
        Row(modules=("vision.services",), owns="", lazy=("vision.tasks",)),
        Row(modules=("vision.tasks",), owns=""),
        Row(modules=("vision.ocr",), owns="", forbids=("django",)),
    )
    package = tmp_path / PACKAGE
    for folder in ("apis", "services", "ocr"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "apis" / "jobs.py").write_text(
        "from vision.services import jobs\nfrom vision.tasks import run\n"
    )
    (package / "services" / "jobs.py").write_text(
        "import vision.tasks\n\ndef f():\n    from vision.tasks import run\n"
    )
    (package / "tasks.py").write_text("def run():\n    pass\n")
    (package / "ocr" / "read.py").write_text("from django.conf import settings\n")
    (package / "stray.py").write_text("")
    wrong, homeless = table_violations(tmp_path, rows)
    assert wrong == [
        "vision.apis.jobs imports vision.tasks at module level",
        "vision.ocr.read imports django.conf.settings (its row forbids django)",
        "vision.services.jobs imports vision.tasks at module level",
    ]
    assert homeless == ["vision.stray"]


def test_the_documented_table_is_the_rendered_structure():
    from tests.import_table import DOC, documented_table, render

    assert documented_table(DOC.read_text(encoding="utf-8")) == render()
