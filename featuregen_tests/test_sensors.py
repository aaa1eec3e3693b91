import json
from pathlib import Path

import dagster as dg
import pytest

from featuregen_assets.assets.ingest.sensors import link_file_sensor
from featuregen_assets.partitions import category_partitions
from featuregen_assets.settings import Settings


@pytest.fixture
def links_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEATUREGEN_LINKS_DIR", str(tmp_path))
    return tmp_path


def _evaluate(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"settings": Settings.from_env()}
    )
    return link_file_sensor(context)


def _apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """Do what the daemon does with the partitions a tick asks for."""
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def test_new_file_adds_partition_and_requests_one_run(links_dir: Path) -> None:
    (links_dir / "cafe.txt").write_text("http://127.0.0.1/a.jpg\n")
    with dg.instance_for_test() as instance:
        result = _evaluate(instance, None)
        assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["cafe"]]
        assert result.dynamic_partitions_requests[0].partitions_def_name == "category"
        assert [(r.partition_key, r.run_key.split(":")[0]) for r in result.run_requests] == [
            ("cafe", "cafe")
        ]
        assert json.loads(result.cursor)["cafe.txt"]["sha"] in result.run_requests[0].run_key


def test_unchanged_file_never_triggers_again_even_with_a_fresh_context(links_dir: Path) -> None:
    (links_dir / "bank.txt").write_text("http://127.0.0.1/a.jpg\n")
    with dg.instance_for_test() as instance:
        first = _evaluate(instance, None)
        _apply(instance, first)
        assert instance.get_dynamic_partitions(category_partitions.name) == ["bank"]
        # A restarted daemon builds a new context from the stored cursor.
        second = _evaluate(instance, first.cursor)
        assert second.run_requests == [] and second.dynamic_partitions_requests == []
        # Touching the file without changing it does not trigger either.
        path = links_dir / "bank.txt"
        path.write_text(path.read_text())
        third = _evaluate(instance, second.cursor)
        assert third.run_requests == []


def test_changed_file_requests_one_new_run_and_no_new_partition(links_dir: Path) -> None:
    path = links_dir / "shop.txt"
    path.write_text("http://127.0.0.1/a.jpg\n")
    with dg.instance_for_test() as instance:
        first = _evaluate(instance, None)
        _apply(instance, first)
        path.write_text("http://127.0.0.1/a.jpg\nhttp://127.0.0.1/b.jpg\n")
        second = _evaluate(instance, first.cursor)
        assert len(second.run_requests) == 1
        assert second.run_requests[0].run_key != first.run_requests[0].run_key
        assert second.dynamic_partitions_requests == []
        assert _evaluate(instance, second.cursor).run_requests == []


def test_bad_category_name_is_skipped_with_a_logged_reason(
    links_dir: Path, capfd: pytest.CaptureFixture
) -> None:
    (links_dir / "Bad Name.txt").write_text("http://127.0.0.1/a.jpg\n")
    (links_dir / "good.txt").write_text("http://127.0.0.1/a.jpg\n")
    (links_dir / "notes.md").write_text("not a link file")
    with dg.instance_for_test() as instance:
        result = _evaluate(instance, None)
        assert [r.partition_key for r in result.run_requests] == ["good"]
        logged = capfd.readouterr().err
        assert "skipping link file Bad Name.txt" in logged
        assert "[a-z0-9]" in logged
        # Reported once, not at every tick.
        again = _evaluate(instance, result.cursor)
        assert again.run_requests == []
        assert "Bad Name.txt" not in capfd.readouterr().err


def test_a_directory_and_a_dangling_symlink_are_skipped_and_the_rest_picked_up(
    links_dir: Path, capfd: pytest.CaptureFixture
) -> None:
    (links_dir / "folder.txt").mkdir()
    (links_dir / "gone.txt").symlink_to(links_dir / "nowhere.txt")
    (links_dir / "shop.txt").write_text("http://127.0.0.1/a.jpg\n")
    with dg.instance_for_test() as instance:
        result = _evaluate(instance, None)
        assert [r.partition_key for r in result.run_requests] == ["shop"]
        logged = capfd.readouterr().err
        assert "skipping link file folder.txt: not a regular file" in logged
        assert "skipping link file gone.txt: cannot be read (No such file or directory)" in logged
        # Reported once; a link file added later is still picked up.
        (links_dir / "cafe.txt").write_text("http://127.0.0.1/b.jpg\n")
        again = _evaluate(instance, result.cursor)
        assert [r.partition_key for r in again.run_requests] == ["cafe"]
        assert "skipping" not in capfd.readouterr().err


def test_every_link_file_format_is_picked_up_and_two_formats_of_one_category_are_refused(
    links_dir: Path, capfd: pytest.CaptureFixture
) -> None:
    for suffix in (".csv", ".tsv", ".jsonl", ".parquet"):
        (links_dir / f"a{suffix.strip('.')}{suffix}").write_bytes(b"url\n")
    (links_dir / "both.txt").write_text("http://127.0.0.1/a.jpg\n")
    (links_dir / "both.csv").write_text("url\nhttp://127.0.0.1/a.jpg\n")
    with dg.instance_for_test() as instance:
        result = _evaluate(instance, None)
        assert sorted(r.partition_key for r in result.run_requests) == [
            "acsv",
            "ajsonl",
            "aparquet",
            "atsv",
        ]
        assert "category 'both' has link files in 2 formats (both.csv, both.txt): keep one" in (
            capfd.readouterr().err
        )
