"""The package's layout: imports go downward only (no cycle), modules stay small, pyproject ships every
package, and ``import vectorpg`` exposes its subpackages. No database needed."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vectorpg"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> set[str]:
    """vectorpg modules that ``path`` imports anywhere (functions included), except under TYPE_CHECKING.
    ``from a import b`` is an import of ``a.b`` when that is a module, else of ``a``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in MODULES}


GRAPH = {name: imports_of(path) - {name} for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := walk(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_the_walk_finds_a_cycle_when_there_is_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert "vectorpg.search.surface" in GRAPH["vectorpg.store.collection"]  # the walk sees real imports


def test_no_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


#: the layers, top to bottom: a module imports only from its own layer or below (README, "Architecture")
LAYERS = [
    (
        "vectorpg",
        "vectorpg.cli",
        "vectorpg.alembic",
        "vectorpg.types",
        "vectorpg.tenancy",
        "vectorpg.aio",
        "vectorpg.integrations",
        "vectorpg.scaling",
    ),
    ("vectorpg.database",),
    ("vectorpg.rag",),
    ("vectorpg.store", "vectorpg.repository"),
    ("vectorpg.search",),
    ("vectorpg.ddl",),
    ("vectorpg.own_schema",),
    ("vectorpg.db",),
]


def layer_of(module: str) -> int:
    best, found = -1, len(LAYERS)  # anything not listed is a base module, below every layer
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "vectorpg" and module.startswith(prefix + "."))
            if matches and len(prefix) > best:
                best, found = len(prefix), level
    return found


def test_imports_go_downward() -> None:
    upward = [
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        for target in targets
        if layer_of(target) < layer_of(source)
    ]
    assert upward == []


def test_modules_are_small_or_say_why() -> None:
    large = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if lines > MAX_LINES and "longer than" not in docstring:
            large.append(f"{name}: {lines} lines")
    assert large == []


def test_pyproject_ships_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {module_name(p.parent) for p in PACKAGE.rglob("__init__.py")} | {"vectorpg.sql", "vectorpg.migrations"}
    assert set(config["packages"]) == packages
    assert config["package-dir"] == {"vectorpg.sql": "sql", "vectorpg.migrations": "alembic/versions"}
    assert not (PACKAGE / "sql").exists() and not (PACKAGE / "migrations").exists()


def test_import_vectorpg_exposes_its_subpackages() -> None:
    names = ["rag", "store", "search", "ddl", "db", "alembic", "cli"]
    code = f"import vectorpg; print(' '.join(getattr(vectorpg, n).__name__ for n in {names!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == [f"vectorpg.{n}" for n in names]


def annotations_of(path: Path) -> set[str]:
    """The names used in the parameter and return annotations of ``path``'s functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            every = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            hints = [a.annotation for a in every if a.annotation] + ([node.returns] if node.returns else [])
            for hint in hints:
                text = ast.unparse(hint)
                names.update(re.findall(r"[A-Za-z_]+", text))
    return names


def test_lower_layers_take_an_engine_never_a_database() -> None:
    below = [name for name in MODULES if layer_of(name) > layer_of("vectorpg.database")]
    assert [name for name in below if "Database" in annotations_of(MODULES[name])] == []


def test_the_0_1_module_paths_still_import_with_a_deprecation_warning() -> None:
    """Migrations autogenerated by vectorpg 0.1 import ``vectorpg.types``; the README said ``vectorpg.tenancy``."""
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from vectorpg.types import VECTOR\n"
        "    from vectorpg.tenancy import tenant_session\n"
        "print(VECTOR(3).dim, tenant_session.__module__)\n"
        "print([str(w.message) for w in caught if w.category is DeprecationWarning])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "3 vectorpg.ddl.tenancy",
        "['vectorpg.types is vectorpg.sqltypes now', 'vectorpg.tenancy is vectorpg.ddl.tenancy now']",
    ]
