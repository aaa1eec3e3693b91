"""Several hosts share one image store: a step on a host without it fails at once, naming it,
and marks, downloads or writes nothing."""

import shutil
from pathlib import Path

import pytest

from featuregen_assets.core.ingest.image_store import ImageStore
from featuregen_assets.core.ingest.store_check import (
    STORE_MARKER,
    StoreMissing,
    require_store,
    verify_store,
)
from featuregen_assets.core.store import db
from featuregen_assets.launch.runs import run_category
from featuregen_tests.servers import jpeg_bytes


def _record(database_url: str, store: Path) -> tuple[str, Path]:
    """One image stored in `store` and its `ok` row."""
    image_id, path = ImageStore(store).put(jpeg_bytes(), "JPEG")
    with db.connection(database_url) as conn:
        conn.execute(
            "INSERT INTO raw_images (category, url, status, image_id, path)"
            " VALUES ('cafe', %s, 'ok', %s, %s)",
            (f"http://127.0.0.1/{image_id}.jpg", image_id, str(path)),
        )
    return image_id, path


@pytest.fixture
def migrated(database_url: str, tmp_path: Path) -> str:
    return db.migrated_url(database_url, tmp_path / "home")


def test_the_first_use_marks_the_store_and_an_earlier_store_is_adopted(
    migrated: str, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh"
    with db.connection(migrated) as conn:
        require_store(conn, fresh)
    assert (fresh / STORE_MARKER).is_file()
    earlier = tmp_path / "earlier"
    _record(migrated, earlier)  # written before featuregen had the marker
    with db.connection(migrated) as conn:
        require_store(conn, earlier)
    assert (earlier / STORE_MARKER).is_file()


def test_an_empty_directory_in_place_of_the_store_is_refused(migrated: str, tmp_path: Path) -> None:
    store = tmp_path / "images"
    _, path = _record(migrated, store)
    shutil.rmtree(store)
    store.mkdir()
    with db.connection(migrated) as conn:
        with pytest.raises(StoreMissing, match=f"the image store {store} is not on this host"):
            verify_store(conn, ImageStore(store), repair=True)
        status = conn.execute("SELECT status FROM raw_images").fetchone()[0]
    assert status == "ok"  # not marked damaged
    assert not (store / STORE_MARKER).exists()


def test_steps_on_a_host_without_the_store_fail_at_once_and_write_nothing(
    fg_env: Path, database_url: str
) -> None:
    images = fg_env / "images"
    _record(db.migrated_url(database_url, fg_env), images)
    (fg_env.parent / "links" / "cafe.txt").write_text("http://127.0.0.1/b.jpg\n")
    shutil.rmtree(images)
    images.mkdir()  # this host: an empty directory where the shared store should be mounted

    for step in ("raw_images", "image_embeddings", "image_prompts"):
        result = run_category("cafe", select=[step])
        assert not result.success
        [failure] = [event for event in result.all_events if event.is_step_failure]
        message = failure.step_failure_data.user_failure_data or failure.step_failure_data.error
        assert f"the image store {images} is not on this host" in str(message), step
    assert list(images.iterdir()) == []  # nothing downloaded again
    with db.connection(database_url) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM raw_images WHERE status = 'ok'),"
            " (SELECT count(*) FROM image_embeddings), (SELECT count(*) FROM image_prompts)"
        ).fetchone()
    assert counts == (1, 0, 0)  # the row is neither marked damaged nor joined by new ones
    checkpoints = fg_env / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.rglob("*"))
