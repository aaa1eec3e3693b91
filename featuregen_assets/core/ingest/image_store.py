"""A content-addressed image store: `images/<ab>/<sha256>.<ext>`, written atomically, verified.

A file's name is the sha256 of its bytes, so a stored file can always be checked: `verify_file`
says whether it is missing, empty or changed (damaged) or cannot be read at all (unreadable:
never treated as damaged), and `put` rewrites a file that no longer holds
the bytes it is named after. A write that fails on our side (disk full, read-only, no
permission) raises `StoreWriteError`: that is not the link's fault and stops the run.
Temporary files carry their writer's `process_token` (pid and start time), so a sweep never
mistakes a recycled pid for a live writer.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from featuregen_assets.core.runtime.processes import process_token, token_alive

EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tif",
}
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".part"
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class StoreWriteError(Exception):
    """The store could not write `path`; the message is `disk full: <path>` when it is."""

    def __init__(self, path: Path, cause: OSError) -> None:
        disk_full = cause.errno in _DISK_FULL
        reason = "disk full" if disk_full else f"cannot write ({cause.strerror or cause})"
        super().__init__(f"{reason}: {path}")
        self.path = path
        self.disk_full = disk_full


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class FileProblem:
    """Why a stored file does not serve its image. `damaged`: its bytes were read (or it is gone)
    and they do not hold the image, so its links may be fetched again and the file replaced;
    otherwise it could not be read at all (no permission, an I/O error, not a file) and is
    left exactly as it is: nothing says its bytes are wrong."""

    reason: str
    damaged: bool

    def __str__(self) -> str:
        return self.reason


def verify_file(path: Path | str, image_id: str) -> FileProblem | None:
    """What is wrong with the stored file of image `image_id` (missing, empty, changed: damaged;
    or unreadable), or None when its bytes still hash to the id."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return FileProblem("empty file", damaged=True)
        actual = file_sha256(path)
    except FileNotFoundError:
        return FileProblem("missing file", damaged=True)
    except OSError as exc:
        return FileProblem(f"unreadable file ({exc.strerror or exc})", damaged=False)
    if actual != image_id:
        reason = f"changed on disk (sha256 {actual[:12]}…, named {image_id[:12]}…)"
        return FileProblem(reason, damaged=True)
    return None


class ImageStore:
    """Stores image bytes once under their sha256; a damaged file is rewritten by `put`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, image_id: str, ext: str) -> Path:
        """Where the image with this id and extension lives."""
        return self.root / image_id[:2] / f"{image_id}.{ext}"

    def put(self, data: bytes, image_format: str) -> tuple[str, Path]:
        """Store `data` (of Pillow format `image_format`); return its image id and path.

        A file already there is kept only if it holds exactly `data`. Raises `StoreWriteError`
        when the file cannot be written; no partial file is left behind.
        """
        image_id = hashlib.sha256(data).hexdigest()
        path = self.path_for(image_id, EXTENSIONS.get(image_format.upper(), "bin"))
        if _holds(path, data):
            with contextlib.suppress(OSError):  # fresh again: an orphan sweep leaves it alone
                os.utime(path)
            return image_id, path
        try:
            self._write(path, data)
        except OSError as exc:
            raise StoreWriteError(path, exc) from exc
        return image_id, path

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f"{TEMP_PREFIX}{process_token()}-", suffix=TEMP_SUFFIX
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def files(self) -> Iterator[Path]:
        """Every stored image file (temporary files excluded)."""
        for path in self.root.glob("??/*"):
            if path.is_file() and not path.name.startswith(TEMP_PREFIX):
                yield path

    def temp_files(self) -> Iterator[tuple[Path, bool]]:
        """Every temporary file, with whether its writer (by its process token) still runs."""
        for tmp in self.root.glob(f"??/{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            yield tmp, token_alive(tmp.name.removeprefix(TEMP_PREFIX).split("-", 1)[0])

    def sweep_orphans(self) -> int:
        """Delete temporary files left by writers that died (their process token is gone)."""
        removed = 0
        for tmp, alive in self.temp_files():
            if not alive:
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file at `path` holds exactly `data`."""
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def remove_if_damaged(path: Path, image_id: str) -> bool:
    """Delete the stored file of `image_id` only if its bytes are read and do not hash to the
    id; whether it was deleted. The file is first moved aside, so a copy `put` writes meanwhile
    is never the one deleted, and checked again there (an intact one is moved back)."""
    aside = path.with_name(f"{TEMP_PREFIX}{process_token()}-damaged{TEMP_SUFFIX}")
    try:
        os.rename(path, aside)
    except OSError:
        return False
    problem = verify_file(aside, image_id)
    if problem is None or not problem.damaged:
        os.replace(aside, path)
        return False
    aside.unlink(missing_ok=True)
    return True


def older_than(path: Path, seconds: float) -> bool:
    """Whether the file was last modified more than `seconds` ago (False once it is gone)."""
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False
