"""`featuregen db verify`: the image store checked against the tables, and repaired."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from featuregen_assets.cli import main as cli
from featuregen_assets.core.ingest.download import DownloadSettings
from featuregen_assets.core.ingest.image_store import ImageStore
from featuregen_assets.core.ingest.ingest import ingest_link_file
from featuregen_assets.core.runtime import paths
from featuregen_assets.core.store import db
from featuregen_assets.settings import Settings
from featuregen_tests.servers import LoopbackServer, jpeg_bytes, noisy_jpeg, static

SETTINGS = DownloadSettings(concurrency=4, retries=0, allowed_networks=("127.0.0.1/32",))
DAY_AGO = 24 * 3600


def _ingest(link_file: Path, store: ImageStore):
    with db.connection(Settings.from_env().database_url) as conn:
        return ingest_link_file(link_file, "check", conn, store, SETTINGS)


def _status(url: str) -> str:
    with db.connection(Settings.from_env().database_url) as conn:
        return conn.execute("SELECT status FROM raw_images WHERE url = %s", (url,)).fetchone()[0]


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
    assert again.damaged.counts == {"missing file": 3}
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
