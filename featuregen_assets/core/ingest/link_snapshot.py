"""A run's own copy of its link file, so the file may be edited or rewritten while the run goes
on: the run reads only its copy (twice: the plan, then the lines to download), and the edit is
the next run's.

Only a regular file inside the links folder is read (`refusal`): a symlink that leads outside
it, a directory or a FIFO is refused with the reason. The copy is checked against the file:
the file is hashed again after the copy and the copy kept only if nothing changed meanwhile
(else copied again, a few times). A text file that starts with a UTF-16 or UTF-32 byte-order
mark is decoded and copied as UTF-8 (one that is not valid in its encoding is refused by name);
one that looks like UTF-16 or UTF-32 without a mark (a quarter or more NUL bytes in its first
block) is refused, as are those encodings for Parquet, which has none.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from featuregen_assets.core.ingest.image_store import file_sha256
from featuregen_assets.core.ingest.link_formats import LinkFileError

COPY_ATTEMPTS = 3
_BLOCK = 2**20
_SNIFF = 4096
_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
UTF8 = "UTF-8"
_BINARY_SUFFIXES = (".parquet",)


@dataclass(frozen=True)
class Snapshot:
    """The run's copy of a link file: where it is (UTF-8 unless binary), the sha256 of the
    file's bytes it was made from, and the encoding they were in."""

    path: Path
    sha256: str
    encoding: str


def refusal(directory: Path, path: Path) -> str | None:
    """Why `path` is not a link file a run may read (a symlink leading outside `directory`, not
    a regular file, cannot be read), or None."""
    try:
        target = path.resolve(strict=True)
        mode = target.stat().st_mode
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        return f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if not target.is_relative_to(directory.resolve()):
        return f"a symlink to {target}, outside the links folder {directory}: not read"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def bom_encoding(head: bytes) -> str | None:
    """ "UTF-16" or "UTF-32" when `head` starts with that byte-order mark, else None."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    return None


def _encoding(path: Path, head: bytes) -> str:
    """The encoding to read the file in; `LinkFileError` for one that cannot be read."""
    found = bom_encoding(head)
    if path.suffix in _BINARY_SUFFIXES:
        if found:
            raise LinkFileError(f"{path.name} starts with a {found} byte-order mark: not Parquet")
        return UTF8
    if found is None and head and head[:_SNIFF].count(0) * 4 >= len(head[:_SNIFF]):
        raise LinkFileError(
            f"{path.name} looks like UTF-16 or UTF-32 without a byte-order mark (NUL bytes):"
            " save it as UTF-8 (or with a byte-order mark)"
        )
    return found or UTF8


def _copy(handle: BinaryIO, out: BinaryIO, encoding: str, name: str) -> str:
    """Copy `handle` to `out` (decoded from `encoding` into UTF-8); the source bytes' sha256."""
    digest = hashlib.sha256()
    decoder = None if encoding == UTF8 else codecs.getincrementaldecoder(encoding)()
    offset = 0
    while block := handle.read(_BLOCK):
        digest.update(block)
        if decoder is None:
            out.write(block)
        else:
            try:
                out.write(decoder.decode(block).encode("utf-8"))
            except UnicodeDecodeError as exc:
                raise LinkFileError(
                    f"{name} starts with a {encoding} byte-order mark but is not valid {encoding}"
                    f" (byte {offset + exc.start}): save it as UTF-8"
                ) from None
        offset += len(block)
    if decoder is not None:
        try:
            out.write(decoder.decode(b"", final=True).encode("utf-8"))
        except UnicodeDecodeError:
            raise LinkFileError(f"{name} ends inside a {encoding} character") from None
    return digest.hexdigest()


def _open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading, not through a symlink, and only if it is a regular file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LinkFileError(f"{path.name}: not a regular file")
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def link_snapshot(directory: Path, path: Path, into: Path) -> Iterator[Snapshot]:
    """A copy of the link file `path` (inside `directory`), under its own name in a folder of
    its own inside `into`, for one run; deleted when the run is done. `LinkFileError` (one
    line) when the file is refused, cannot be decoded, or changed during each of COPY_ATTEMPTS
    copies."""
    reason = refusal(directory, path)
    if reason:
        raise LinkFileError(f"{path.name}: {reason}")
    source = path.resolve()
    into.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=into, prefix=f".{path.stem}-"))
    copy = folder / path.name  # the file's own name, for the readers' messages
    try:
        with copy.open("wb") as out:
            for _ in range(COPY_ATTEMPTS):
                out.seek(0)
                out.truncate()
                with _open_regular(source) as handle:
                    encoding = _encoding(path, handle.read(_SNIFF))
                    handle.seek(0)
                    sha256 = _copy(handle, out, encoding, path.name)
                if file_sha256(source) == sha256:
                    break
            else:
                raise LinkFileError(
                    f"{path.name} changed while it was copied, {COPY_ATTEMPTS} times: run again"
                    " once it is written"
                )
        yield Snapshot(copy, sha256, encoding)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
