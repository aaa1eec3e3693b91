"""The image store: damaged files detected and rewritten, write failures, temporary files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from featuregen_assets.core.ingest.image_store import ImageStore, verify_file
from featuregen_assets.core.runtime.processes import process_token, token_alive
from featuregen_tests.servers import jpeg_bytes, noisy_jpeg


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "middle overwritten":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + b"\0" * 200 + data[middle + 200 :])
    elif how == "another image":
        path.write_bytes(jpeg_bytes(10, 10, (0, 0, 255)))


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("missing", "missing file"),
        ("empty", "empty file"),
        ("truncated", "changed on disk"),
        ("middle overwritten", "changed on disk"),
        ("another image", "changed on disk"),
    ],
)
def test_a_damaged_file_is_detected_and_put_rewrites_it(
    store: ImageStore, how: str, reason: str
) -> None:
    data = noisy_jpeg()
    image_id, path = store.put(data, "JPEG")
    assert verify_file(path, image_id) is None
    _damage(path, how)
    problem = verify_file(path, image_id)
    assert problem.reason.startswith(reason) and problem.damaged
    assert store.put(data, "JPEG") == (image_id, path)
    assert path.read_bytes() == data and verify_file(path, image_id) is None
    assert list(store.temp_files()) == []


def test_process_tokens_tell_a_recycled_pid_from_the_writer() -> None:
    token = process_token()
    assert token_alive(token)
    pid, _, started = token.partition(".")
    assert started, "no start time on this system"
    assert not token_alive(f"{pid}.{int(started) + 1}")  # same pid, another process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = process_token(child.pid)
    child.wait()
    assert not token_alive(dead)


def test_sweep_deletes_temporary_files_of_dead_writers_only(store: ImageStore) -> None:
    directory = store.root / "ab"
    directory.mkdir(parents=True)
    pid, _, started = process_token().partition(".")
    live = directory / f".tmp-{process_token()}-x1.part"
    recycled = directory / f".tmp-{pid}.{int(started) + 1}-x2.part"
    for path in (live, recycled):
        path.write_bytes(b"partial")
    assert store.sweep_orphans() == 1
    assert live.exists() and not recycled.exists()
