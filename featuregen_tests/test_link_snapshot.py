"""A run reads its own copy of its link file: rewrites during a run, symlinks leading outside
the links folder, UTF-16/UTF-32 files and edited captions."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import dagster as dg
import pytest

from featuregen_assets.assets.ingest.raw_images import raw_images
from featuregen_assets.assets.ingest.sensors import link_file_sensor
from featuregen_assets.core.ingest.link_formats import LinkFileError
from featuregen_assets.core.ingest.link_snapshot import link_snapshot
from featuregen_assets.core.store import db
from featuregen_assets.core.store.feature_store import link_captions
from featuregen_assets.definitions import build_resources
from featuregen_assets.launch.run_console import failed_steps
from featuregen_assets.settings import Settings
from featuregen_tests.servers import LoopbackServer, noisy_jpeg, static


def _materialize(category: str, **config) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    """One raw_images run of `category`; the result and the run's warnings and errors."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("category", [category])
        result = dg.materialize(
            [raw_images],
            partition_key=category,
            resources=build_resources(),
            instance=instance,
            raise_on_error=False,
            run_config={"ops": {"raw_images": {"config": config}}} if config else None,
        )
        logged = [
            e.user_message for e in instance.all_logs(result.run_id) if e.level >= logging.WARNING
        ]
    return result, logged


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    event = result.asset_materializations_for_node("raw_images")[0]
    return {name: getattr(entry, "value", entry) for name, entry in event.metadata.items()}


def _rows(category: str) -> dict[str, tuple]:
    with db.connection(Settings.from_env().database_url) as conn:
        rows = conn.execute(
            "SELECT url, status, caption FROM raw_images WHERE category = %s", (category,)
        ).fetchall()
    return {url: (status, caption) for url, status, caption in rows}


def test_a_link_file_rewritten_mid_run_leaves_no_row_from_neither_version(
    fg_env: Path,
) -> None:
    links = fg_env.parent / "links" / "rewrite.txt"
    rewritten = threading.Event()
    with LoopbackServer() as server:
        image = static(noisy_jpeg(40, 30))
        # More than a read buffer (8 KB) of lines: the others answer 404 at once.
        old = [server.url(f"/ok_{i:03d}.jpg") for i in range(400)]
        new = [server.url(f"/fresh/{i}.jpg?w=180") for i in range(300)]

        def rewrite_then_serve(handler) -> None:
            if not rewritten.is_set():  # `cat new > rewrite.txt` as the first download starts
                with links.open("w") as out:
                    out.write("".join(f"{url}\tnew caption {i}\n" for i, url in enumerate(new)))
                rewritten.set()
            image(handler)

        server.route("/ok_000.jpg", rewrite_then_serve)
        links.write_text("".join(f"{url}\tx\n" for url in old))
        first, _ = _materialize("rewrite", concurrency=1)
        assert rewritten.is_set() and first.success
        assert set(_rows("rewrite")) == set(old)  # this run's copy only
        second, _ = _materialize("rewrite")
    assert second.success
    assert set(_rows("rewrite")) == set(old) | set(new)


def test_an_edited_caption_is_stored_by_the_next_run(fg_env: Path) -> None:
    links = fg_env.parent / "links" / "captions.txt"
    with LoopbackServer() as server:
        urls = [server.route(f"/c/{i}.jpg", static(noisy_jpeg(40 + i, 30))) for i in range(3)]
        links.write_text(f"{urls[0]}\ta red circle\n{urls[1]}\n{urls[2]}\tkept\n")
        assert _materialize("captions")[0].success
        links.write_text(f"{urls[0]}\ta blue square\n{urls[1]}\tnow one\n{urls[2]}\n")
        result, _ = _materialize("captions")
    assert _metadata(result)["captions_updated"] == 2
    rows = _rows("captions")
    assert [rows[url][1] for url in urls] == ["a blue square", "now one", "kept"]
    with db.connection(Settings.from_env().database_url) as conn:
        pending = link_captions(conn, "captions", "link-file:captions", "link_caption")
    assert sorted(caption for _, caption in pending) == ["a blue square", "kept", "now one"]


def test_a_symlink_leading_outside_the_links_folder_is_refused_by_run_and_sensor(
    fg_env: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secrets.txt").write_text("db_password=hunter2\napi_key=abc\nhttp://x/1.jpg\n")
    (fg_env.parent / "links" / "secrets.txt").symlink_to(outside / "secrets.txt")
    result, _ = _materialize("secrets")
    [(step, reason)] = failed_steps(result)
    assert step == "raw_images" and "outside the links folder" in reason
    assert _rows("secrets") == {}
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, resources={"settings": Settings.from_env()}
        )
        ticked = link_file_sensor(context)
    assert ticked.run_requests == []
    assert "outside the links folder" in ticked.cursor


def test_a_utf16_link_file_is_decoded_and_counted_line_for_line(fg_env: Path) -> None:
    links = fg_env.parent / "links" / "wide.txt"
    with LoopbackServer() as server:
        urls = [server.route(f"/w/{i}.jpg", static(noisy_jpeg(50 + i, 30))) for i in range(3)]
        links.write_text("".join(f"{url}\tcafé {i}\n" for i, url in enumerate(urls)), "utf-16")
        result, _ = _materialize("wide")
    metadata = _metadata(result)
    assert (metadata["links"], metadata["bad_lines"]) == (3, 0)
    assert metadata["link_file_encoding"] == "UTF-16"
    assert [_rows("wide")[url] for url in urls] == [("ok", f"café {i}") for i in range(3)]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("http://x/1.jpg\n".encode("utf-32"), None),
        ("http://x/1.jpg\n".encode("utf-16-be"), "looks like UTF-16 or UTF-32"),
        (b"\xff\xfe" + b"h\x00\x00\xd8a\x00", "not valid UTF-16"),  # a lone surrogate
    ],
)
def test_other_encodings_are_decoded_or_refused_by_name(
    tmp_path: Path, data: bytes, says: str | None
) -> None:
    links = tmp_path / "links"
    links.mkdir()
    (links / "c.txt").write_bytes(data)
    if says is None:
        with link_snapshot(links, links / "c.txt", tmp_path / "copies") as snap:
            assert snap.encoding == "UTF-32"
            assert snap.path.read_text("utf-8") == "http://x/1.jpg\n"
        assert list((tmp_path / "copies").iterdir()) == []  # the copy goes with the run
        return
    with (
        pytest.raises(LinkFileError, match=says),
        link_snapshot(links, links / "c.txt", tmp_path / "copies"),
    ):
        pass


def test_a_symlink_inside_the_links_folder_is_read(tmp_path: Path) -> None:
    links = tmp_path / "links"
    (links / "shared").mkdir(parents=True)
    (links / "shared" / "all.txt").write_text("http://x/1.jpg\n")
    os.symlink("shared/all.txt", links / "c.txt")
    with link_snapshot(links, links / "c.txt", tmp_path / "copies") as snap:
        assert snap.path.read_text() == "http://x/1.jpg\n" and snap.path.name == "c.txt"
