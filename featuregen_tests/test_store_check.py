"""`featuregen db verify`: the image store checked against the tables, and repaired."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from featuregen_assets.cli import main as cli
from featuregen_assets.core.ingest.download import DownloadSettings
from featuregen_assets.core.ingest.image_store import ImageStore, verify_file
from featuregen_assets.core.ingest.ingest import ingest_link_file
from featuregen_assets.core.ingest.store_check import intact, sweep_orphan_files
from featuregen_assets.core.runtime import paths
from featuregen_assets.core.store import db
from featuregen_assets.settings import Settings
from featuregen_tests.servers import LoopbackServer, jpeg_bytes, noisy_jpeg, static
from featuregen_tests.unreadable import unreadable

SETTINGS = DownloadSettings(concurrency=4, retries=0, allowed_networks=("127.0.0.1/32",))
DAY_AGO = 24 * 3600


def _ingest(link_file: Path, store: ImageStore, category: str = "check"):
    with db.connection(Settings.from_env().database_url) as conn:
        return ingest_link_file(link_file, category, conn, store, SETTINGS)


def _status(url: str, category: str = "check") -> str:
    with db.connection(Settings.from_env().database_url) as conn:
        return conn.execute(
            "SELECT status FROM raw_images WHERE url = %s AND category = %s", (url, category)
        ).fetchone()[0]


def _stored(url: str) -> tuple[str, Path]:
    with db.connection(Settings.from_env().database_url) as conn:
        image_id, path = conn.execute(
            "SELECT image_id, path FROM raw_images WHERE url = %s AND status = 'ok' LIMIT 1",
            (url,),
        ).fetchone()
    return image_id, Path(path)


def _touch(path: Path, seconds: float) -> None:
    """Move the file's modification time by `seconds` (what a rewrite in place does)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + int(seconds * 1e9)))


def test_verify_finds_damage_repairs_it_and_the_next_run_restores_the_files(
    fg_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = ImageStore(paths.images_dir(Settings.from_env().home))
    with LoopbackServer() as server:
        urls = [server.route(f"/v/{i}.jpg", static(noisy_jpeg(60 + i, 40))) for i in range(5)]
        link_file = tmp_path / "check.txt"
        link_file.write_text("".join(f"{url}\n" for url in urls))
        assert _ingest(link_file, store).statuses == {"ok": 5}
        assert cli(["db", "verify"]) == 0
        assert "no problems found" in capsys.readouterr().out

        with db.connection(Settings.from_env().database_url) as conn:
            files = dict(conn.execute("SELECT url, path FROM raw_images").fetchall())
        changed, deleted = Path(files[urls[0]]), Path(files[urls[1]])
        original = changed.read_bytes()
        middle = len(original) // 2
        changed.write_bytes(original[:middle] + b"\0" * 200 + original[middle + 200 :])
        deleted.unlink()
        orphan = store.path_for("f" * 64, "jpg")
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(jpeg_bytes())
        os.utime(orphan, (orphan.stat().st_atime - DAY_AGO, orphan.stat().st_mtime - DAY_AGO))
        dead_writer = changed.parent / ".tmp-999999999.1-abc.part"
        dead_writer.write_bytes(b"half")

        assert cli(["db", "verify"]) == 1
        found = capsys.readouterr().out
        assert f"{changed}: changed on disk" in found
        assert f"{deleted}: missing file" in found
        assert str(orphan) in found and str(dead_writer) in found
        assert _status(urls[0]) == "ok"  # nothing changes without --repair

        cli(["db", "verify", "--repair"])
        repaired = capsys.readouterr().out
        assert "repaired: 4" in repaired
        assert {_status(urls[0]), _status(urls[1])} == {"file_damaged"}
        assert not orphan.exists() and not dead_writer.exists() and not changed.exists()

        again = _ingest(link_file, store)
        assert again.statuses == {"ok": 2}
        assert changed.read_bytes() == original and deleted.is_file()
        assert cli(["db", "verify"]) == 0
        assert "no problems found" in capsys.readouterr().out


def test_a_missing_or_resized_file_is_fetched_again_by_the_next_run(
    fg_env: Path, tmp_path: Path
) -> None:
    store = ImageStore(paths.images_dir(Settings.from_env().home))
    with LoopbackServer() as server:
        urls = [server.route(f"/r/{i}.jpg", static(noisy_jpeg(50 + i, 30))) for i in range(3)]
        link_file = tmp_path / "check.txt"
        link_file.write_text("".join(f"{url}\n" for url in urls))
        _ingest(link_file, store)
        for path in store.files():  # every file lost, the store (its marker) still there
            path.unlink()
        again = _ingest(link_file, store)
    assert again.stored_files.damaged.counts == {"missing file": 3}
    assert again.statuses == {"ok": 3}
    assert all(_status(url) == "ok" for url in urls)
    assert len(list(store.files())) == 3


def test_each_run_sweeps_orphan_files_past_the_grace_period_only(
    fg_env: Path, tmp_path: Path
) -> None:
    store = ImageStore(paths.images_dir(Settings.from_env().home))
    old, young = store.path_for("a" * 64, "jpg"), store.path_for("b" * 64, "png")
    for path in (old, young):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes())
    os.utime(old, (old.stat().st_atime - DAY_AGO, old.stat().st_mtime - DAY_AGO))
    with LoopbackServer() as server:
        url = server.route("/o.jpg", static(noisy_jpeg()))
        link_file = tmp_path / "check.txt"
        link_file.write_text(f"{url}\n")
        assert _ingest(link_file, store).statuses == {"ok": 1}
    assert not old.exists() and young.exists()
    assert len(list(store.files())) == 2  # the young orphan and the downloaded image


def test_an_unreadable_file_is_reported_and_left_alone_by_runs_checks_and_repair(
    fg_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ImageStore(paths.images_dir(Settings.from_env().home))
    with LoopbackServer() as server:
        shared = server.route("/u/shared.jpg", static(noisy_jpeg(70, 50)))
        own = server.route("/u/own.jpg", static(noisy_jpeg(71, 50)))
        (tmp_path / "check.txt").write_text(f"{shared}\n{own}\n")
        (tmp_path / "other.txt").write_text(f"{shared}\n")
        _ingest(tmp_path / "check.txt", store)
        _ingest(tmp_path / "other.txt", store, "other")
        image_id, path = _stored(shared)
        _touch(path, 10)  # the run hashes a file whose modification time changed
        assert cli(["db", "verify"]) == 0
        capsys.readouterr()
        # Without its DAC capabilities this thread cannot open the database's socket either:
        # one connection opened before serves the run, the check and the CLI.
        with db.connection(Settings.from_env().database_url) as conn, monkeypatch.context() as mp:
            mp.setattr(db, "connection", lambda url: contextlib.nullcontext(conn))
            with unreadable(path):
                again = ingest_link_file(tmp_path / "check.txt", "check", conn, store, SETTINGS)
                kept, skipped = intact(conn, [(image_id, str(path))], "check")
                assert cli(["db", "verify", "--repair"]) == 1
                shown = capsys.readouterr().out
                sweep_orphan_files(conn, store, grace_s=0)
    assert again.stored_files.unreadable.total == 1 and again.stored_files.damaged.total == 0
    assert again.attempted == 0
    assert kept == [] and "Permission denied" in skipped[0]
    assert "unreadable files" in shown and str(path) in shown and "repaired" not in shown
    assert _status(shared) == _status(shared, "other") == _status(own) == "ok"
    assert path.is_file() and verify_file(path, image_id) is None


def test_a_damaged_file_marks_only_the_rows_of_the_category_being_run(
    fg_env: Path, tmp_path: Path
) -> None:
    store = ImageStore(paths.images_dir(Settings.from_env().home))
    with LoopbackServer() as server:
        shared = server.route("/d/shared.jpg", static(noisy_jpeg(72, 50)))
        (tmp_path / "check.txt").write_text(f"{shared}\n")
        (tmp_path / "other.txt").write_text(f"{shared}\n")
        _ingest(tmp_path / "check.txt", store)
        _ingest(tmp_path / "other.txt", store, "other")
        image_id, path = _stored(shared)
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[len(original) // 2] ^= 0xFF  # same size: only its changed time tells
        path.write_bytes(bytes(flipped))
        with db.connection(Settings.from_env().database_url) as conn:
            _, skipped = intact(conn, [(image_id, str(path))], "check")
        assert "changed on disk" in skipped[0]
        assert (_status(shared), _status(shared, "other")) == ("file_damaged", "ok")
        again = _ingest(tmp_path / "check.txt", store)
        assert again.statuses == {"ok": 1} and again.stored_files.hashed == 0
        assert _status(shared) == "ok" and path.read_bytes() == original

        path.write_bytes(bytes(flipped))
        _touch(path, 10)
        again = _ingest(tmp_path / "other.txt", store, "other")
    assert again.stored_files.damaged.counts == {"changed on disk": 1}
    assert again.stored_files.hashed == 1 and again.statuses == {"ok": 1}
    assert path.read_bytes() == original
    with db.connection(Settings.from_env().database_url) as conn:
        marked = conn.execute(
            "SELECT category, attempts FROM raw_images ORDER BY category"
        ).fetchall()
    assert marked == [("check", 2), ("other", 2)]  # each refetched once, by its own run


def test_the_orphan_sweep_gives_a_file_whose_link_failed_its_grace_period(
    fg_env: Path, tmp_path: Path
) -> None:
    store = ImageStore(paths.images_dir(Settings.from_env().home))
    with LoopbackServer() as server:
        url = server.route("/g/gone.jpg", static(noisy_jpeg(73, 50)))
        (tmp_path / "check.txt").write_text(f"{url}\n")
        _ingest(tmp_path / "check.txt", store)
        _, path = _stored(url)
        path.write_bytes(path.read_bytes()[:-10] + b"\0" * 10)  # damaged, then its link 404s
        os.utime(path, (path.stat().st_atime - DAY_AGO, path.stat().st_mtime - DAY_AGO))
        server.routes.clear()
        again = _ingest(tmp_path / "check.txt", store)
    assert again.statuses == {"http_404": 1} and path.is_file()
    with db.connection(Settings.from_env().database_url) as conn:
        assert sweep_orphan_files(conn, store) == []
        conn.execute("UPDATE raw_images SET updated_at = now() - interval '2 days'")
        conn.commit()
        assert sweep_orphan_files(conn, store) == [path]
