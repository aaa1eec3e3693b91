"""What each package may import (docs/ARCHITECTURE.md), read from the source's own imports."""

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

import featuregen_assets

ROOT = Path(featuregen_assets.__file__).parent
PACKAGE = "featuregen_assets"


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


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith(f"{PACKAGE}.core")])
def test_core_does_not_import_dagster(name: str) -> None:
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
