"""Row checkpoints: chunks on disk that a re-run takes back, and a step killed mid-captioning."""

import hashlib
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from featuregen_assets.core.runtime.checkpoint import RowCheckpoint, discard_run, step_directory
from featuregen_assets.core.runtime.paths import checkpoints_dir
from featuregen_assets.core.store import db
from featuregen_assets.settings import Settings
from featuregen_tests.killed_runs import (
    killed_after_chunks,
    latest_metadata,
    start_run,
    store_downloaded,
)
from featuregen_tests.servers import jpeg_bytes

NAMES = ("image_id", "prompt", "truncated")
ROWS = [("a", "a red café", False), ("b", "", True), ("c", "line\nbreak", False)]


def test_rows_come_back_with_their_types_in_a_new_checkpoint(tmp_path: Path) -> None:
    writer = RowCheckpoint(tmp_path, NAMES, run_id="run1", every_s=0)
    for row in ROWS:
        writer.add(row)
    assert len(list(tmp_path.glob("run1.*.rows"))) == 3

    reader = RowCheckpoint(tmp_path, NAMES, run_id="run2")
    assert reader.resume({"a", "b", "c"}) == 3
    table = reader.table()
    assert list(table.rows()) == ROWS
    assert [type(v) for v in next(table.rows())] == [str, str, bool]


def test_vectors_come_back_bit_for_bit_and_stack_into_one_array(tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    writer = RowCheckpoint(tmp_path, ("image_id", "embedding"), run_id="run1", every_s=0)
    for i, vector in enumerate(vectors):
        writer.add((f"id{i}", vector))
    reader = RowCheckpoint(tmp_path, ("image_id", "embedding"), run_id="run2")
    assert reader.resume({"id0", "id2"}) == 2
    table = reader.table()
    assert table.columns["image_id"] == ["id0", "id2"]
    assert table.vector_dims() == {"embedding": 8}
    np.testing.assert_array_equal(table.columns["embedding"], vectors[[0, 2]])


def test_only_pending_rows_resume_and_chunks_with_none_pending_are_deleted(tmp_path: Path) -> None:
    writer = RowCheckpoint(tmp_path, NAMES, run_id="run1", every_s=0)
    for row in ROWS:
        writer.add(row)
    reader = RowCheckpoint(tmp_path, NAMES, run_id="run2")
    assert reader.resume({"b"}) == 1
    assert reader.keys() == {"b"}
    assert len(list(tmp_path.glob("*.rows"))) == 1


def test_resumed_rows_become_the_resuming_runs_and_go_when_it_is_discarded(fg_env: Path) -> None:
    directory = step_directory(
        checkpoints_dir(fg_env), "image_prompts", "cafe", "tiny/qwen2vl@0123abcd"
    )
    killed = RowCheckpoint(directory, NAMES, run_id="killed", every_s=0)
    killed.add(ROWS[0])
    killed.add(ROWS[1])
    resuming = RowCheckpoint(directory, NAMES, run_id="resuming", every_s=0)
    assert resuming.resume({"a", "b"}) == 2
    resuming.add(ROWS[2])
    assert {p.name.split(".")[0] for p in directory.glob("*.rows")} == {"resuming"}

    assert discard_run(checkpoints_dir(fg_env), "image_prompts", "bank", "resuming") == 0
    (directory / "resuming.x.000009.rows").mkdir()  # a chunk that cannot be unlinked
    assert discard_run(checkpoints_dir(fg_env), "image_prompts", "cafe", "resuming") == 2
    assert [p.name for p in directory.glob("*.rows")] == ["resuming.x.000009.rows"]
    assert RowCheckpoint(directory, NAMES, run_id="later").resume({"a"}) == 0


def test_rows_are_written_when_the_interval_has_passed_and_on_flush(tmp_path: Path) -> None:
    checkpoint = RowCheckpoint(tmp_path, NAMES, run_id="run1", every_s=3600)
    checkpoint.add(ROWS[0])
    checkpoint.add(ROWS[1])
    assert not list(tmp_path.glob("*.rows"))
    checkpoint.flush()
    checkpoint.flush()
    checkpoint.add(ROWS[2])
    checkpoint.flush()
    chunks = sorted(tmp_path.glob("*.rows"))
    assert len(chunks) == 2
    assert RowCheckpoint(tmp_path, NAMES, run_id="r").resume({"a", "b", "c"}) == 3


def test_unreadable_cut_short_and_partial_chunks_are_skipped(tmp_path: Path) -> None:
    writer = RowCheckpoint(tmp_path, NAMES, run_id="run1", every_s=0)
    writer.add(ROWS[0])
    writer.add(ROWS[1])
    [_, second] = sorted(tmp_path.glob("*.rows"))
    second.write_bytes(second.read_bytes()[:-20])
    (tmp_path / "run0.x.000001.rows").write_bytes(b"not a chunk")
    (tmp_path / "run0.x.000002.rows.partial").write_bytes(b"being written")
    reader = RowCheckpoint(tmp_path, NAMES, run_id="run2")
    assert reader.resume({"a", "b"}) == 1
    assert reader.keys() == {"a"}
    assert not (tmp_path / "run0.x.000001.rows").exists()
    assert not second.exists()


def test_two_checkpoints_of_one_run_never_share_a_file(tmp_path: Path) -> None:
    first = RowCheckpoint(tmp_path, NAMES, run_id="run1", every_s=0)
    first.add(ROWS[0])
    retry = RowCheckpoint(tmp_path, NAMES, run_id="run1", every_s=0)
    retry.add(ROWS[1])
    assert RowCheckpoint(tmp_path, NAMES, run_id="r").resume({"a", "b"}) == 2


def test_a_checkpoint_that_cannot_be_written_keeps_the_rows_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the checkpoint directory should be")
    checkpoint = RowCheckpoint(blocked / "step", NAMES, run_id="run1", every_s=0)
    for row in ROWS:
        checkpoint.add(row)
    checkpoint.flush()
    assert list(checkpoint.table().rows()) == ROWS
    assert caplog.text.count("checkpoint writes stop for this run") == 1


def test_a_row_of_the_wrong_width_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 values"):
        RowCheckpoint(tmp_path, ("image_id", "prompt"), run_id="r").add(ROWS[0])


IMAGES = 48


def test_sigkill_mid_captioning_then_rerun_frees_the_gpu_pool_and_resumes(fg_env: Path) -> None:
    """The killed run holds the "gpu" pool slot: unless it is marked failed, reruns wait forever."""
    images = fg_env / "files"
    images.mkdir()
    rows = []
    for i in range(IMAGES):
        body = jpeg_bytes(32 + i % 16, 32 + i // 16, (i % 256, 40, 200 - i % 200))
        image_id = hashlib.sha256(body).hexdigest()
        rows.append(("big", f"http://127.0.0.1/{i}.jpg", "ok", image_id, str(images / f"{i}.jpg")))
        (images / f"{i}.jpg").write_bytes(body)
    store_downloaded(fg_env.parent / "links", rows)
    env = {
        **os.environ,
        "FEATUREGEN_CHECKPOINT_EVERY_S": "0",
        "FEATUREGEN_BATCH_SIZE": "2",
        "FEATUREGEN_NUM_WORKERS": "0",
    }

    first, directory, killed_with = killed_after_chunks(env, "image_prompts", fg_env, 6, NAMES)
    assert 6 <= len(killed_with) < IMAGES

    assert start_run({**env, "FEATUREGEN_BATCH_SIZE": "16"}, "image_prompts").wait(timeout=300) == 0
    with db.connection(Settings.from_env().database_url) as conn:
        generated = conn.execute(
            "SELECT count(*), count(DISTINCT image_id) FROM image_prompts"
            " WHERE source = 'generated'"
        ).fetchone()
    assert generated == (IMAGES, IMAGES)
    metadata = latest_metadata("image_prompts")
    with dg.DagsterInstance.get() as instance:
        killed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    assert metadata["resumed"].value == len(killed_with)
    assert metadata["generated"].value == IMAGES
    assert [run.tags["featuregen/pid"] for run in killed] == [str(first.pid)]

    assert not list(directory.glob("*.rows")), "the stored run's checkpoint outlived it"
