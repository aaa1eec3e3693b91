"""What each package may import (docs/ARCHITECTURE.md), read from the source's own imports."""

import ast
import graphlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import featuregen_assets

ROOT = Path(featuregen_assets.__file__).parent
PACKAGE = "featuregen_assets"
# Core and the research harness take their settings and inputs as arguments, never Dagster's.
ARGUMENTS_ONLY = (f"{PACKAGE}.core", f"{PACKAGE}.research")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """Every module `name` imports, at the top or inside a function; within the package, the
    module itself (`from featuregen_assets.core.store import db` → `...core.store.db`)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            submodules = {f"{base}.{alias.name}" for alias in node.names}
            found.update(submodules & MODULES.keys() or {base})
    return found


def _internal(name: str) -> set[str]:
    return {module for module in _imports(name) if module in MODULES and module != name}


def test_the_import_reader_sees_what_a_module_imports() -> None:
    imports = _imports("featuregen_assets.assets.features.image_embeddings")
    assert "dagster" in imports
    assert "featuregen_assets.assets.features.model_step" in imports
    assert "featuregen_assets.core.store.feature_store" in imports


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith(ARGUMENTS_ONLY)])
def test_core_and_research_do_not_import_dagster(name: str) -> None:
    dagster = {m for m in _imports(name) if m.split(".")[0].partition("_")[0] == "dagster"}
    assert not dagster, f"{name} imports {sorted(dagster)}: core/ is free of Dagster"


PRODUCTION = [n for n in MODULES if not n.startswith((f"{PACKAGE}.demo", f"{PACKAGE}.cli"))]


@pytest.mark.parametrize("name", PRODUCTION)
def test_production_code_does_not_import_the_demo(name: str) -> None:
    demo = {m for m in _imports(name) if m.startswith(f"{PACKAGE}.demo")}
    assert not demo, f"{name} imports {sorted(demo)}: only the CLI's `demo` command may"


def test_no_import_cycle_among_the_package_modules() -> None:
    graph = {name: _internal(name) for name in MODULES}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def _core_package(name: str) -> str | None:
    """`featuregen_assets.core.ingest.fetch` → `ingest`; None outside a core package."""
    parts = name.split(".")
    return parts[2] if len(parts) > 3 and parts[1] == "core" else None


def test_no_import_cycle_among_the_core_packages() -> None:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        if package := _core_package(name):
            imported = {_core_package(module) for module in _internal(name)}
            graph.setdefault(package, set()).update(imported - {None, package})
    assert {"ingest", "runtime", "store", "vision"} <= graph.keys()
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


# Libraries a model step needs and nothing else: every Dagster step subprocess, `dagster dev` and
# the CLI import the definitions, so these come in only when a step that runs a model does.
MODEL_LIBRARIES = ("torch", "transformers", "safetensors", "sentence_transformers")


@pytest.mark.parametrize(
    "statement",
    [
        "import featuregen_assets.definitions",
        "from featuregen_assets.definitions import build_defs; build_defs().get_repository_def()",
        "import featuregen_assets.cli",
    ],
)
def test_loading_the_definitions_imports_no_model_library(statement: str) -> None:
    probe = f"{statement}\nimport sys\nprint(sorted(set({MODEL_LIBRARIES!r}) & sys.modules.keys()))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", f"`{statement}` imports {out.strip()}"


def _matches(module: str, banned: str) -> bool:
    """`module` is `banned` or inside it; "dagster" also stands for its libraries (dagster_ray)."""
    if banned == "dagster":
        return module.split(".")[0].partition("_")[0] == "dagster"
    return module == banned or module.startswith(f"{banned}.")


# The "never" cells of docs/ARCHITECTURE.md's import table (`demo` for all production code is
# test_production_code_does_not_import_the_demo's): module prefix → what it never imports.
NEVER = {
    f"{PACKAGE}.core": (
        "dagster",
        f"{PACKAGE}.assets",
        f"{PACKAGE}.resources",
        f"{PACKAGE}.settings",
        f"{PACKAGE}.definitions",
        f"{PACKAGE}.research",
    ),
    f"{PACKAGE}.research": (
        "dagster",
        f"{PACKAGE}.assets",
        f"{PACKAGE}.resources",
        f"{PACKAGE}.settings",
        f"{PACKAGE}.definitions",
        f"{PACKAGE}.launch",
        f"{PACKAGE}.serve",
        f"{PACKAGE}.cli",
        f"{PACKAGE}.core.runtime.paths",  # its inputs are arguments, not the home's layout
    ),
    f"{PACKAGE}.settings": ("dagster",),
    f"{PACKAGE}.resources": (f"{PACKAGE}.assets",),
    f"{PACKAGE}.launch": (f"{PACKAGE}.assets",),
    f"{PACKAGE}.serve": (
        "dagster",
        f"{PACKAGE}.assets",
        f"{PACKAGE}.resources",
        f"{PACKAGE}.definitions",
        f"{PACKAGE}.launch",
    ),
}


@pytest.mark.parametrize("name", MODULES)
def test_no_module_imports_what_the_table_forbids(name: str) -> None:
    banned = [b for prefix, never in NEVER.items() if _matches(name, prefix) for b in never]
    found = sorted({m for m in _imports(name) for b in banned if _matches(m, b)})
    assert not found, f"{name} imports {found}: docs/ARCHITECTURE.md's import table forbids it"


def _environ_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of every read or write of the process environment through `os`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr in {"environ", "getenv", "putenv", "unsetenv"}:
                found.append((node.lineno, f"os.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            names = {alias.name for alias in node.names}
            found += [(node.lineno, f"from os import {n}") for n in names & {"environ", "getenv"}]
    return found


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith(ARGUMENTS_ONLY)])
def test_core_and_research_read_no_environment_variable(name: str) -> None:
    path = MODULES[name]
    uses = _environ_uses(ast.parse(path.read_text(), str(path)))
    assert not uses, f"{name} uses the environment at {uses}: settings come as arguments"


# The launch side, which sets up the environment that Dagster and the processes it starts
# (steps, `dagster dev`, Ray steps forwarding DAGSTER_HOME) inherit: the one place a module
# may write os.environ. Everything else builds a child's environment as a new mapping.
ENVIRONMENT_WRITERS = {f"{PACKAGE}.launch.runs", f"{PACKAGE}.cli"}
_ENVIRON_WRITES = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__"}


def _environ_writes(tree: ast.AST) -> list[int]:
    """Lines that write `os.environ` (item assignment or deletion, a mutating method) or call
    `os.putenv` / `os.unsetenv`."""
    lines = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        for target in targets:
            if isinstance(target, ast.Subscript) and ast.unparse(target.value) == "os.environ":
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner, method = ast.unparse(node.func.value), node.func.attr
            if (owner == "os.environ" and method in _ENVIRON_WRITES) or (
                owner == "os" and method in {"putenv", "unsetenv"}
            ):
                lines.append(node.lineno)
    return lines


def test_the_environment_reader_sees_writes() -> None:
    source = "import os\nos.environ['A'] = '1'\nos.environ.setdefault('B', '2')\nos.putenv('C', '')"
    assert _environ_writes(ast.parse(source)) == [2, 3, 4]
    assert _environ_writes(ast.parse("import os\nenv = {**os.environ, 'A': '1'}")) == []


@pytest.mark.parametrize("name", sorted(MODULES.keys() - ENVIRONMENT_WRITERS))
def test_os_environ_is_written_only_on_the_launch_side(name: str) -> None:
    path = MODULES[name]
    lines = _environ_writes(ast.parse(path.read_text(), str(path)))
    assert not lines, (
        f"{name} writes os.environ at lines {lines}: build a child's environment as a new"
        f" mapping, or set it up on the launch side ({sorted(ENVIRONMENT_WRITERS)})"
    )


# A statement that changes the database's schema; a session's TEMP table and its drop from
# pg_temp are scratch space, not schema.
_DDL = re.compile(
    r"\b(CREATE|ALTER|DROP)\s+(OR\s+REPLACE\s+)?(UNIQUE\s+)?(?P<temp>TEMP(ORARY)?\s+)?"
    r"(TABLE|INDEX|EXTENSION|DATABASE|SCHEMA|VIEW|MATERIALIZED|TYPE|FUNCTION|TRIGGER|SEQUENCE)"
    r"\b(\s+IF\s+(NOT\s+)?EXISTS)?(?P<pg_temp>\s+pg_temp\.)?",
    re.IGNORECASE,
)
DDL_MODULE = f"{PACKAGE}.core.store.schema"


def _ddl_statements(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, statement start) of every DDL statement in the module's strings (not docstrings)."""
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docstrings.add(id(body[0].value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings:
                continue
            for match in _DDL.finditer(node.value):
                if not (match["temp"] or match["pg_temp"]):
                    found.append((node.lineno, match.group(0)))
    return found


def test_the_ddl_reader_sees_ddl() -> None:
    source = (
        'def f(conn):\n    """CREATE TABLE in a docstring is prose."""\n'
        '    conn.execute("CREATE INDEX IF NOT EXISTS {} ON t")\n'
        '    conn.execute("CREATE TEMP TABLE s (LIKE t) ON COMMIT DROP")\n'
        '    conn.execute("DROP TABLE pg_temp.{}")\n'
        '    conn.execute("ALTER TABLE t ADD COLUMN c int")\n'
    )
    assert [line for line, _ in _ddl_statements(ast.parse(source))] == [3, 6]


@pytest.mark.parametrize("name", sorted(MODULES.keys() - {DDL_MODULE}))
def test_only_the_schema_module_holds_ddl(name: str) -> None:
    path = MODULES[name]
    found = _ddl_statements(ast.parse(path.read_text(), str(path)))
    assert not found, f"{name} holds DDL {found}: the schema is changed only in {DDL_MODULE}"
