"""`ingest_link_file` against a loopback server and a real PostgreSQL (issue 14's cases)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from featuregen_assets.core.ingest.download import DownloadSettings
from featuregen_assets.core.ingest.image_store import ImageStore, StoreWriteError, verify_file
from featuregen_assets.core.ingest.ingest import DatabaseLost, ingest_link_file
from featuregen_assets.core.ingest.links import DUPLICATE, MAX_LINE_BYTES, url_key
from featuregen_assets.core.ingest.netpolicy import MAX_URL_LENGTH
from featuregen_assets.core.store import db, schema
from featuregen_tests.servers import LoopbackServer, jpeg_bytes, noisy_jpeg, static, timed

SETTINGS = DownloadSettings(
    concurrency=4, per_host=4, retries=0, total_timeout=10.0, allowed_networks=("127.0.0.1/32",)
)


@pytest.fixture
def server():
    with LoopbackServer() as running:
        for i in range(20):
            running.route(f"/img/{i}.jpg", static(jpeg_bytes(16 + i, 16)))
        yield running


def _rows(database_url: str) -> dict[str, tuple]:
    with db.connection(database_url) as conn:
        rows = conn.execute("SELECT url, status, caption, url_key FROM raw_images").fetchall()
    return {url: (status, caption, key) for url, status, caption, key in rows}


def test_long_urls_control_characters_and_a_bom_cost_no_other_link(
    server: LoopbackServer, database_url: str, tmp_path: Path
) -> None:
    signed = server.url("/img/1.jpg?sig=" + "s" * 2800)
    too_long = server.url("/img/2.jpg?sig=" + "t" * 20_000)
    huge_line = server.url("/img/3.jpg?sig=" + "h" * (MAX_LINE_BYTES + 10))
    lines = [
        f"\ufeff{server.url('/img/0.jpg')}\tfirst line, after a byte-order mark",
        f"{signed}\ta signed URL of 2.8 kB",
        f"{too_long}\ttoo long to fetch",
        huge_line,
        f"{server.url('/img/4.jpg')}\ta caption with a \0 NUL and a \x07 bell",
        f"{server.url('/img/5.jpg')}\0trailer\tNUL in the URL",
        f"{server.url('/img/6.jpg')}",
        f"{server.url('/img/6.jpg')}#frag",
        server.url("/img/6.jpg").replace("http://", "HTTP://"),
        "not a url at all",
    ]
    path = tmp_path / "hostile.txt"
    path.write_bytes("\n".join(lines).encode("utf-8") + b"\n")
    with db.connection(database_url) as conn:
        summary = ingest_link_file(path, "hostile", conn, ImageStore(tmp_path / "images"), SETTINGS)

    rows = _rows(database_url)
    by_path = {url.split("?")[0].rsplit("/", 1)[-1]: row for url, row in rows.items()}
    assert set(by_path) == {"0.jpg", "1.jpg", "2.jpg", "4.jpg", "6.jpg"}
    assert {name: row[0] for name, row in by_path.items()} == {
        "0.jpg": "ok",
        "1.jpg": "ok",
        "2.jpg": "url_too_long",
        "4.jpg": "ok",
        "6.jpg": "ok",
    }
    assert signed in rows and rows[signed][2] == url_key(signed)
    [kept_long] = [url for url in rows if url.startswith(too_long[:100])]
    assert len(kept_long) == MAX_URL_LENGTH and rows[kept_long][2] == url_key(too_long)
    assert by_path["4.jpg"][1] == "a caption with a \ufffd NUL and a \ufffd bell"
    assert by_path["0.jpg"][1] == "first line, after a byte-order mark"

    report = summary.lines
    assert report.skipped.counts == {
        f"line longer than {MAX_LINE_BYTES} bytes": 1,
        "control character in URL": 1,
        "not a URL": 1,
    }
    assert report.duplicates.counts == {DUPLICATE: 2}
    assert report.cleaned.total == 1
    # Every link line is one row or one counted skip.
    assert len(rows) + report.skipped.total + report.duplicates.total == len(lines)
    assert summary.links == summary.attempted == len(rows)


def test_a_lost_database_connection_stops_the_run_at_once(
    database_url: str, tmp_path: Path
) -> None:
    finished: dict[str, float] = {}
    links = 200
    with LoopbackServer() as server:
        urls = [
            server.route(f"/slow/{i}.jpg", timed(jpeg_bytes(8 + i % 50, 8), 0.05, finished))
            for i in range(links)
        ]
        path = tmp_path / "lost.txt"
        path.write_text("".join(f"{url}\n" for url in urls))
        with db.connection(database_url) as conn:
            backend = conn.info.backend_pid

            def kill_backend_after_rows() -> None:
                with db.connection(database_url) as watcher:
                    while watcher.execute("SELECT count(*) FROM raw_images").fetchone()[0] < 10:
                        time.sleep(0.05)
                    watcher.execute("SELECT pg_terminate_backend(%s)", (backend,))

            killer = threading.Thread(target=kill_backend_after_rows)
            killer.start()
            with pytest.raises(DatabaseLost) as raised:
                ingest_link_file(path, "lost", conn, ImageStore(tmp_path / "images"), SETTINGS)
            killer.join()
    message = str(raised.value)
    assert message.startswith("database connection lost (") and "\n" not in message
    # It stopped at the first commit after the loss, long before the end of the list.
    assert len(finished) < links / 2
    with db.connection(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM raw_images").fetchone()[0]
    assert 10 <= stored < links / 2


@contextlib.contextmanager
def _database_at(
    pg_admin_url: str, version: int, monkeypatch: pytest.MonkeyPatch
) -> Iterator[psycopg.Connection]:
    """A new database migrated up to `version` only (`monkeypatch.undo()` restores the rest),
    dropped afterwards."""
    name = f"test_v{version}_{uuid.uuid4().hex[:8]}"
    url = db.ensure_database(pg_admin_url, name)
    try:
        with db.connection(url) as conn:
            monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:version])
            schema.migrate(conn)
            yield conn
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migration_4_rekeys_existing_rows_without_losing_any(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = [
        ("cafe", "http://a.example/é.jpg", "ok", "a" * 64),
        ("bank", "http://a.example/é.jpg", "ok", "a" * 64),
        ("cafe", "http://a.example/2.jpg#x", "http_404", None),
    ]
    with _database_at(pg_admin_url, 3, monkeypatch) as conn:
        conn.cursor().executemany(
            "INSERT INTO raw_images (category, url, status, image_id) VALUES (%s, %s, %s, %s)",
            old,
        )
        conn.commit()
        monkeypatch.undo()
        assert schema.migrate(conn) >= 4
        rows = conn.execute(
            "SELECT category, url, status, image_id, url_key FROM raw_images"
        ).fetchall()
    assert sorted(row[:4] for row in rows) == sorted(old)
    assert all(key == url_key(row_url) for _, row_url, _, _, key in rows)


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MB tmpfs (needs root; skipped elsewhere): a real full disk, not a mocked write."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_without_error_rows(
    tiny_disk: Path, database_url: str, tmp_path: Path
) -> None:
    with LoopbackServer() as server:
        urls = [server.route(f"/big/{i}.jpg", static(noisy_jpeg(200, 150))) for i in range(120)]
        path = tmp_path / "full.txt"
        path.write_text("".join(f"{url}\n" for url in urls))
        store = ImageStore(tiny_disk / "images")
        with db.connection(database_url) as conn:
            with pytest.raises(StoreWriteError) as raised:
                ingest_link_file(path, "full", conn, store, SETTINGS)
            rows = conn.execute("SELECT status, image_id, path FROM raw_images").fetchall()
    assert str(raised.value).startswith(f"disk full: {tiny_disk}")
    assert rows and {status for status, _, _ in rows} == {"ok"}
    for _, image_id, stored in rows:
        assert verify_file(stored, image_id) is None
    assert list(store.temp_files()) == []
    assert len(rows) < len(urls)
    assert len(list(store.files())) >= len(rows)  # finished writes whose rows were not due


def test_a_second_run_of_a_category_waits_for_the_first_and_downloads_nothing_twice(
    database_url: str, tmp_path: Path
) -> None:
    finished: dict[str, float] = {}
    with LoopbackServer() as server:
        urls = [
            server.route(f"/twice/{i}.jpg", timed(jpeg_bytes(8 + i, 8), 0.05, finished))
            for i in range(40)
        ]
        path = tmp_path / "twice.txt"
        path.write_text("".join(f"{url}\n" for url in urls))
        store = ImageStore(tmp_path / "images")
        said: list[str] = []
        summaries = {}

        def run(name: str, notify) -> None:
            with db.connection(database_url) as conn:
                summaries[name] = ingest_link_file(
                    path, "twice", conn, store, SETTINGS, notify=notify
                )

        first = threading.Thread(target=run, args=("first", said.append))
        first.start()
        while not finished:
            time.sleep(0.01)
        run("second", said.append)
        first.join()
    assert said == ["another run is ingesting category 'twice': waiting for it to finish"]
    assert summaries["first"].statuses == {"ok": 40}
    assert summaries["second"].attempted == 0 and summaries["second"].skipped_ok == 40
    assert set(server.hits.values()) == {1}


def test_migration_5_gives_each_category_its_link_caption(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _database_at(pg_admin_url, 4, monkeypatch) as conn:
        conn.cursor().executemany(
            "INSERT INTO raw_images (category, url, status, image_id, caption)"
            " VALUES (%s, %s, 'ok', %s, %s)",
            [
                ("cafe", "http://a/1.jpg", "i1", "a cup"),
                ("bank", "http://b/1.jpg", "i1", "a vault"),
                ("cafe", "http://a/2.jpg", "i2", "now another caption"),
            ],
        )
        conn.cursor().executemany(
            "INSERT INTO image_prompts (image_id, model, source, prompt)"
            " VALUES (%s, 'link-file', 'link_caption', %s)",
            [("i1", "a vault"), ("i2", "an old caption")],
        )
        conn.commit()
        monkeypatch.undo()
        assert schema.migrate(conn) >= 5
        prompts = conn.execute(
            "SELECT image_id, model, prompt FROM image_prompts ORDER BY 1, 2"
        ).fetchall()
    assert prompts == [
        ("i1", "link-file:bank", "a vault"),  # cafe's "a cup" is written by its next run
        ("i2", "link-file", "an old caption"),  # matches no link any more: kept as it was
    ]
