import hashlib
import logging
from pathlib import Path

import dagster as dg
import pytest

from featuregen_assets.assets.ingest.checks import failure_rate_below_threshold
from featuregen_assets.assets.ingest.raw_images import raw_images
from featuregen_assets.core.store import db
from featuregen_assets.definitions import build_resources
from featuregen_assets.demo.scenes import generate_dataset, write_link_files
from featuregen_assets.demo.server import DemoServer
from featuregen_assets.settings import Settings


@pytest.fixture
def served(fg_env: Path, tmp_path: Path):
    site = tmp_path / "site"
    scenes = generate_dataset(site, ["cafe", "bank"], per_category=5, seed=1)
    with DemoServer(site) as server:
        write_link_files(scenes, server.base_url, tmp_path / "links")
        yield server


def _materialize(
    instance: dg.DagsterInstance,
    category: str,
    assets: tuple = (raw_images, failure_rate_below_threshold),
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """`assets` of the `category` partition (added) on `instance`, failures kept in the result."""
    instance.add_dynamic_partitions("category", [category])
    return dg.materialize(
        list(assets),
        partition_key=category,
        resources=build_resources(),
        instance=instance,
        raise_on_error=False,
        run_config=run_config,
    )


def _rows(sql: str, *params) -> list[tuple]:
    with db.connection(Settings.from_env().database_url) as conn:
        return conn.execute(sql, params).fetchall()


def test_raw_images_downloads_records_and_is_idempotent(served: DemoServer, fg_env: Path) -> None:
    with dg.instance_for_test() as instance:
        result = _materialize(instance, "cafe")
        assert result.success
        metadata = result.asset_materializations_for_node("raw_images")[0].metadata
        assert metadata["links"].value == 7
        assert metadata["stored_by_status"].data == {"ok": 5, "http_404": 1, "not_image": 1}
        [check] = result.get_asset_check_evaluations()
        assert check.passed

        rows = _rows("SELECT status, image_id, path, width, height, mime FROM raw_images")
        assert len(rows) == 7
        for status, image_id, path, width, height, mime in rows:
            if status != "ok":
                assert image_id is None
                continue
            data = Path(path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == image_id == Path(path).stem
            assert Path(path).is_relative_to(fg_env / "images")
            assert width >= 224 and height >= 224 and mime.startswith("image/")
        before = _rows("SELECT url, status, attempts, updated_at FROM raw_images ORDER BY url")

        again = _materialize(instance, "cafe")
        metadata = again.asset_materializations_for_node("raw_images")[0].metadata
        assert metadata["skipped_already_ok"].value == 5
        assert metadata["attempted"].value == 2
        after = _rows("SELECT url, status, attempts, updated_at FROM raw_images ORDER BY url")
        assert [r for r in after if r[1] == "ok"] == [r for r in before if r[1] == "ok"]
        assert len(after) == 7

        assert _materialize(instance, "bank").success
        assert _rows("SELECT category, count(*) FROM raw_images GROUP BY 1 ORDER BY 1") == [
            ("bank", 7),
            ("cafe", 7),
        ]
        assert [
            r
            for r in _rows(
                "SELECT url, status, attempts, updated_at FROM raw_images"
                " WHERE category = 'cafe' ORDER BY url"
            )
            if r[1] == "ok"
        ] == [r for r in before if r[1] == "ok"]
        assert not list((fg_env / "images").rglob("*.part"))


def test_failure_rate_check_blocks_a_mostly_broken_partition(
    fg_env: Path, tmp_path: Path, served: DemoServer
) -> None:
    (tmp_path / "links" / "broken.txt").write_text(
        f"{served.base_url}/missing/a.jpg\n{served.base_url}/html/b.jpg\n"
        f"{served.base_url}/missing/c.jpg\nfile:///etc/passwd\n"
    )
    with dg.instance_for_test() as instance:
        result = _materialize(instance, "broken")
    assert not result.success  # the blocking check fails the run
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.metadata["failure_rate"].value == 1.0
    statuses = dict(_rows("SELECT url, status FROM raw_images"))
    assert statuses["file:///etc/passwd"] == "bad_url"


def test_missing_link_file_is_a_clear_failure(fg_env: Path) -> None:
    with dg.instance_for_test() as instance:
        result = _materialize(instance, "nowhere", (raw_images,))
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "no link file for category 'nowhere'" in failure.message


def test_a_parquet_link_file_downloads_as_its_txt_does(served: DemoServer, fg_env: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    links = fg_env.parent / "links"
    rows = [line.partition("\t") for line in (links / "cafe.txt").read_text().splitlines()]
    (links / "cafe.txt").unlink()
    records = [{"URL": url, "TEXT": caption or None} for url, _, caption in rows]
    pq.write_table(
        pa.Table.from_pylist([*records, {"URL": None, "TEXT": "x"}]), links / "cafe.parquet"
    )
    with dg.instance_for_test() as instance:
        columns = {"url_col": "URL", "caption_col": "TEXT"}
        result = _materialize(
            instance, "cafe", (raw_images,), {"ops": {"raw_images": {"config": columns}}}
        )
        assert result.success
        metadata = result.asset_materializations_for_node("raw_images")[0].metadata
        assert metadata["links"].value == 7
        assert metadata["stored_by_status"].data == {"ok": 5, "http_404": 1, "not_image": 1}
        warnings = [
            e.message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING
        ]
        assert f"cafe.parquet row {len(records) + 1}: skipped (no URL in the row)" in warnings
    stored = dict(_rows("SELECT url, caption FROM raw_images WHERE category = 'cafe'"))
    assert stored == {url: caption or None for url, _, caption in rows if not url.startswith("#")}
