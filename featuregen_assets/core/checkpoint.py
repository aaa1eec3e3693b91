"""Rows a step has computed but not yet handed to its IO manager, kept on local disk.

A step that is killed, or whose write fails, leaves its finished rows in chunk files; the next
run of the step takes back those still pending and computes only the rest. Chunks are ``.npz``
files (loaded without pickle) named after the run that wrote them, written to a temporary name
and renamed, so a reader sees whole chunks only and runs writing side by side never share a file.
"""

from __future__ import annotations

import os
import time
import uuid
import zipfile
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from featuregen_assets.core import paths
from featuregen_assets.core.table import Table

CHUNK_SUFFIX = ".npz"


def step_directory(asset: str, partition: str, model_key: str) -> Path:
    """Where the rows of `asset`'s step over `partition` with `model_key` are kept."""
    return paths.checkpoints_dir() / asset / partition / quote(model_key, safe="@")


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
        self._last_write = time.monotonic()

    def resume(self, pending: Collection[str], stored: Callable[[str], bool]) -> int:
        """Take back the checkpointed rows whose key is in `pending`; returns how many.

        `stored(run_id)` says whether that run's step handed its rows to the table: its chunks
        are deleted, as are chunks with no pending key and unreadable ones. The rows taken back
        are rewritten as this run's own chunk and their old chunks deleted.
        """
        if not self.directory.is_dir():
            return 0
        resumed: dict[str, tuple[Any, ...]] = {}
        finished: dict[str, bool] = {}
        taken: list[Path] = []
        for path in sorted(self.directory.glob(f"*{CHUNK_SUFFIX}")):
            run_id = path.name.split(".", 1)[0]
            if run_id not in finished:
                finished[run_id] = stored(run_id)
            try:
                live = [] if finished[run_id] else self._read(path)
            except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
                live = []
            live = [row for row in live if row[0] in pending]
            if live:
                taken.append(path)
            else:
                path.unlink(missing_ok=True)
            resumed.update((row[0], row) for row in live)
        if resumed:
            # The rows become this run's, so that once it stores them its chunks say so.
            self._rows.extend(resumed.values())
            self._write(list(resumed.values()))
            for path in taken:
                path.unlink(missing_ok=True)
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
        """Write the rows added since the last write as one chunk file."""
        if self._unwritten:
            self._write(self._rows[-self._unwritten :])
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
        columns = {name: np.asarray([row[i] for row in rows]) for i, name in enumerate(self.names)}
        with partial.open("wb") as f:
            np.savez(f, **columns)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, final)

    def _read(self, path: Path) -> list[tuple[Any, ...]]:
        with np.load(path, allow_pickle=False) as chunk:
            columns = [chunk[name] for name in self.names]
        values = [list(column) if column.ndim == 2 else column.tolist() for column in columns]
        return list(zip(*values, strict=True))


def _is_vector(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == 1
