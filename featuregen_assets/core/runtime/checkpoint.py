"""Rows a step has computed but not yet handed to its IO manager, kept on local disk.

A step that is killed, or whose write fails, leaves its finished rows in chunk files; the next
run of the step takes back those still pending and computes only the rest. Once a run's rows
are stored, the IO manager deletes its chunks (`discard_run`). A chunk is a file of ``.npy``
arrays one after another (the column names, then each column; loaded without pickle), named
after the run that wrote it, written to a temporary name and renamed: a reader sees whole chunks
only, runs writing side by side never share a file, and a chunk that a crash cut short is
skipped.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from featuregen_assets.core.store.table import Table

CHUNK_SUFFIX = ".rows"

_log = logging.getLogger(__name__)


def step_directory(root: Path, asset: str, partition: str, model_key: str) -> Path:
    """Where the rows of `asset`'s step over `partition` with `model_key` are kept under the
    checkpoints directory `root`."""
    return root / asset / partition / quote(model_key, safe="@")


def discard_run(root: Path, asset: str, partition: str, run_id: str) -> int:
    """Delete the chunks under `root` that run `run_id` wrote for `asset` over `partition` (its
    rows are stored now); returns how many."""
    chunks = (root / asset / partition).glob(f"*/{run_id}.*{CHUNK_SUFFIX}")
    return sum(_remove(path) for path in chunks)


def _remove(path: Path) -> bool:
    """Delete a chunk; one that cannot be deleted is logged (its rows are in the table or in
    another chunk by then) and left for a later run."""
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        _log.warning(f"checkpoint chunk {path} not deleted: {e}")
        return False
    return True


@dataclass(frozen=True)
class StepCheckpoint:
    """Chunks of one step's checkpoint on disk, waiting for the step's next run."""

    asset: str
    partition: str
    model: str
    chunks: int
    bytes: int


def step_checkpoints(root: Path) -> list[StepCheckpoint]:
    """Every step checkpoint under `root` with chunks in it, by asset, partition and model."""
    found = []
    for directory in sorted(root.glob("*/*/*")):
        chunks = list(directory.glob(f"*{CHUNK_SUFFIX}"))
        if chunks:
            asset, partition = directory.parent.parent.name, directory.parent.name
            size = sum(chunk.stat().st_size for chunk in chunks)
            found.append(
                StepCheckpoint(asset, partition, unquote(directory.name), len(chunks), size)
            )
    return found


class RowCheckpoint:
    """Rows with the columns `names`, keyed by the first, kept in chunk files in `directory`.

    Values are strings, numbers, booleans or 1-D arrays (vectors, stacked into one array).

    `run_id` names the chunks this run writes. `add` holds a row and writes the rows not yet
    written once `every_s` seconds have passed since the last write (0: at every row); `flush`
    writes them now.
    """

    def __init__(
        self, directory: Path, names: Sequence[str], run_id: str, every_s: float = 30.0
    ) -> None:
        self.directory = Path(directory)
        self.names = tuple(names)
        self.every_s = every_s
        self._prefix = f"{run_id}.{uuid.uuid4().hex[:8]}"
        self._chunks_written = 0
        self._rows: list[tuple[Any, ...]] = []
        self._unwritten = 0
        self._failed = False
        self._last_write = time.monotonic()

    def resume(self, pending: Collection[str]) -> int:
        """Take back the checkpointed rows whose key is in `pending`; returns how many.

        Chunks with no pending key (stored since, or their images gone) and unreadable ones
        are deleted. The rows taken back are rewritten as this run's own chunk and their old
        chunks deleted, so that `discard_run` of this run removes them once it stored them.
        """
        if not self.directory.is_dir():
            return 0
        resumed: dict[str, tuple[Any, ...]] = {}
        taken: list[Path] = []
        for path in sorted(self.directory.glob(f"*{CHUNK_SUFFIX}")):
            try:
                live = [row for row in self._read(path) if row[0] in pending]
            except (OSError, EOFError, ValueError, KeyError):
                live = []
            if live:
                taken.append(path)
            else:
                _remove(path)
            resumed.update((row[0], row) for row in live)
        if resumed:
            self._rows.extend(resumed.values())
            self._unwritten = len(resumed)
            self.flush()
            if not self._failed:
                for path in taken:
                    _remove(path)
        return len(resumed)

    def keys(self) -> set[str]:
        """The keys of every row held: resumed and added."""
        return {row[0] for row in self._rows}

    def add(self, row: Sequence[Any]) -> None:
        """Hold one row; write the unwritten rows out if `every_s` has passed."""
        if len(row) != len(self.names):
            raise ValueError(f"row has {len(row)} values, checkpoint columns are {self.names}")
        self._rows.append(tuple(row))
        self._unwritten += 1
        if time.monotonic() - self._last_write >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Write the rows added since the last write as one chunk file.

        A write that fails (disk full, no permission) is logged and checkpointing stops for
        this run: the rows are still held, so the step goes on and stores them.
        """
        if self._unwritten and not self._failed:
            try:
                self._write(self._rows[-self._unwritten :])
            except OSError as e:
                self._failed = True
                _log.warning(f"checkpoint writes stop for this run: {type(e).__name__}: {e}")
            self._unwritten = 0
        self._last_write = time.monotonic()

    def table(self) -> Table:
        """Every row held, as a table with the checkpoint's columns (vectors stacked)."""
        columns: dict[str, Any] = {}
        for i, name in enumerate(self.names):
            values = [row[i] for row in self._rows]
            columns[name] = np.stack(values) if values and _is_vector(values[0]) else values
        return Table(columns)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._chunks_written += 1
        final = self.directory / f"{self._prefix}.{self._chunks_written:06d}{CHUNK_SUFFIX}"
        partial = final.with_name(final.name + ".partial")
        try:
            with partial.open("wb") as f:
                np.save(f, np.asarray(self.names))
                for i in range(len(self.names)):
                    np.save(f, np.asarray([row[i] for row in rows]))
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)

    def _read(self, path: Path) -> list[tuple[Any, ...]]:
        with path.open("rb") as f:
            names = np.load(f).tolist()
            chunk = {name: np.load(f) for name in names}
        columns = [chunk[name] for name in self.names]
        values = [list(column) if column.ndim == 2 else column.tolist() for column in columns]
        return list(zip(*values, strict=True))


def _is_vector(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == 1
