"""Ingest a category's link file: download what is missing and record one row per link."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psycopg

from featuregen_assets.core.ingest.download import (
    DownloadResult,
    DownloadSettings,
    download_links,
)
from featuregen_assets.core.ingest.image_store import ImageStore
from featuregen_assets.core.ingest.links import (
    LineReport,
    Link,
    links_at,
    unique_link_offsets,
    url_key,
)
from featuregen_assets.core.ingest.netpolicy import MAX_URL_LENGTH
from featuregen_assets.core.ingest.store_check import (
    Recheck,
    recheck_category,
    require_store,
    sweep_orphan_files,
)
from featuregen_assets.core.runtime.progress import Progress

COMMIT_ROWS = 64
_log = logging.getLogger(__name__)
COMMIT_EVERY_S = 1.0

_UPSERT = """
INSERT INTO raw_images AS r
    (category, url_key, url, status, error, image_id, path, width, height, mime, format, bytes,
     caption, file_mtime_ns)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (category, url_key) DO UPDATE SET
    status = EXCLUDED.status, error = EXCLUDED.error, image_id = EXCLUDED.image_id,
    path = coalesce(EXCLUDED.path, r.path), file_mtime_ns = EXCLUDED.file_mtime_ns,
    width = EXCLUDED.width, height = EXCLUDED.height,
    mime = EXCLUDED.mime, format = EXCLUDED.format, bytes = EXCLUDED.bytes,
    caption = coalesce(EXCLUDED.caption, r.caption),
    attempts = r.attempts + 1, updated_at = now()
WHERE r.status <> 'ok' OR EXCLUDED.status = 'ok'
"""


class DatabaseLost(RuntimeError):
    """The database connection failed during a run: the run stops at once."""


@dataclass
class IngestSummary:
    """What one ingest of a link file did."""

    category: str
    links: int = 0
    skipped_ok: int = 0
    captions_updated: int = 0
    attempted: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    lines: LineReport = field(default_factory=LineReport)
    stored_files: Recheck = field(default_factory=Recheck)


def ok_captions(conn: psycopg.Connection, category: str) -> dict[str, int]:
    """Row keys (`url_key`) of the category's links already downloaded successfully, each with
    the `hash` of its stored caption (to tell a caption edited in the link file)."""
    rows = conn.execute(
        "SELECT url_key, caption FROM raw_images WHERE category = %s AND status = 'ok'",
        (category,),
    )
    return {key: hash(caption) for key, caption in rows}


_UPDATE_CAPTION = """
UPDATE raw_images SET caption = %s, updated_at = now()
WHERE category = %s AND url_key = %s AND status = 'ok'
"""


def _row(category: str, result: DownloadResult, caption: str | None) -> tuple:
    return (
        category,
        url_key(result.url),
        result.url[:MAX_URL_LENGTH],
        result.status,
        result.error,
        result.image_id,
        result.path,
        result.width,
        result.height,
        result.mime,
        result.format,
        result.bytes,
        caption,
        _mtime_ns(result.path),
    )


def _mtime_ns(path: str | None) -> int | None:
    """The stored file's modification time as the row records it (None without a file)."""
    if path is None:
        return None
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class RowWriter:
    """Upserts result rows, committing every `rows` rows or `every_s` seconds (`commit_if_due`
    is also called while no result arrives), so a kill loses at most the rows of the last
    second. A failed connection raises `DatabaseLost`."""

    def __init__(
        self, conn: psycopg.Connection, rows: int = COMMIT_ROWS, every_s: float = COMMIT_EVERY_S
    ) -> None:
        self.conn = conn
        self.rows = rows
        self.every_s = every_s
        self.pending: list[tuple] = []
        self.committed = 0
        self.last_commit = time.monotonic()

    def add(self, row: tuple) -> None:
        """Hold one row; commit when enough rows or time have gathered."""
        self.pending.append(row)
        self.commit_if_due()

    def commit_if_due(self) -> None:
        """Commit the held rows if there are `rows` of them or `every_s` has passed."""
        due = time.monotonic() - self.last_commit >= self.every_s
        if len(self.pending) >= self.rows or (self.pending and due):
            self.commit()

    def commit(self) -> None:
        """Write and commit the held rows."""
        self.last_commit = time.monotonic()
        if not self.pending:
            return
        try:
            with self.conn.cursor() as cur:
                cur.executemany(_UPSERT, self.pending)
            self.conn.commit()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
            raise DatabaseLost(
                f"database connection lost ({first_line}): stopped after {self.committed} rows;"
                f" the {len(self.pending)} links finished since are not recorded"
                " (the next run downloads them again)"
            ) from exc
        self.committed += len(self.pending)
        self.pending.clear()


def ingest_link_file(
    path: Path,
    category: str,
    conn: psycopg.Connection,
    store: ImageStore,
    settings: DownloadSettings,
    *,
    force: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every_s: float = 5.0,
    notify: Callable[[str], None] = _log.warning,
) -> IngestSummary:
    """Download the links of `path` not yet `ok` (all when `force`) and upsert their rows.

    One ingest of a category runs at a time: a second waits for the first (`notify` says so)
    and then downloads only what is left. First, the store must be on this host
    (`require_store`: `StoreMissing` before anything is read or written); then `ok` rows whose
    file is missing, of another size or changed (hashed when its modification time changed)
    are marked `file_damaged` (so they are downloaded again: `recheck_category`), and temporary
    files of dead writers and files no row names (older than
    store_check.ORPHAN_GRACE_S) are deleted.

    Rows are committed as downloads finish (`RowWriter`), also when the run is interrupted,
    so a killed run keeps all but its last second; a link that was `ok` is never downgraded
    by a later failure.
    """
    summary = IngestSummary(category=category)
    with category_lock(conn, category, notify), path.open("rb") as handle:
        require_store(conn, store.root)
        summary.stored_files = recheck_category(conn, category)
        store.sweep_orphans()
        sweep_orphan_files(conn, store)
        done = {} if force else ok_captions(conn, category)
        places = _plan(handle, summary, done, conn)
        captions: dict[str, str | None] = {}

        def pending() -> Iterator[Link]:
            for link in links_at(handle, places):
                captions[link.url] = link.caption
                yield link

        writer = RowWriter(conn)
        results = download_links(
            pending(),
            store,
            settings,
            on_progress=on_progress,
            progress_every_s=progress_every_s,
            total=len(places),
            on_idle=writer.commit_if_due,
            idle_s=writer.every_s,
        )
        try:
            for result in results:
                summary.attempted += 1
                summary.statuses[result.status] += 1
                writer.add(_row(category, result, captions.pop(result.url, None)))
        except DatabaseLost:
            raise
        except BaseException:
            writer.commit()  # an interrupt keeps what finished before it
            raise
        writer.commit()
    return summary


@contextlib.contextmanager
def category_lock(
    conn: psycopg.Connection, category: str, notify: Callable[[str], None]
) -> Iterator[None]:
    """Hold the category's ingest lock (a PostgreSQL session advisory lock, so it goes with a
    killed run's connection); wait for it, saying so once, when another run holds it.

    Waiting, not refusing: the second run then finds the first one's links `ok` and ends
    green with what is left to do, where a refusal would be a failed run to retry by hand."""
    key = int.from_bytes(hashlib.sha256(f"featuregen-ingest:{category}".encode()).digest()[:8])
    key -= 2**63  # a signed bigint
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
        notify(f"another run is ingesting category {category!r}: waiting for it to finish")
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    conn.commit()
    try:
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            conn.commit()


class _Places:
    """Where the links to download are in the link file: (byte offset, line number) pairs,
    16 bytes a link."""

    def __init__(self) -> None:
        self.offsets, self.line_nos = array("q"), array("q")

    def add(self, offset: int, line_no: int) -> None:
        self.offsets.append(offset)
        self.line_nos.append(line_no)

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self.offsets, self.line_nos, strict=True)


def _plan(
    handle: BinaryIO, summary: IngestSummary, done: dict[str, int], conn: psycopg.Connection
) -> _Places:
    """The first pass over the link file: every line validated, counted and de-duplicated;
    where the links not yet `ok` are. A link already `ok` whose line now gives another caption
    has its stored caption replaced (a line without one keeps it), so the category's next
    `image_prompts` run stores it as the link-caption prompt. The second pass (`links_at`)
    reads only the lines to download, so a file of junk is parsed once."""
    places = _Places()
    captions: list[tuple[str | None, str, str]] = []
    for offset, link in unique_link_offsets(handle, summary.lines):
        summary.links += 1
        key = url_key(link.url)
        if key not in done:
            places.add(offset, link.line_no)
            continue
        summary.skipped_ok += 1
        if link.caption is not None and hash(link.caption) != done[key]:
            captions.append((link.caption, summary.category, key))
            if len(captions) >= COMMIT_ROWS:
                summary.captions_updated += _update_captions(conn, captions)
    summary.captions_updated += _update_captions(conn, captions)
    return places


def _update_captions(conn: psycopg.Connection, captions: list[tuple[str | None, str, str]]) -> int:
    """Store the edited captions (`(caption, category, url_key)`), committed; how many."""
    if not captions:
        return 0
    with conn.cursor() as cur:
        cur.executemany(_UPDATE_CAPTION, captions)
    conn.commit()
    done = len(captions)
    captions.clear()
    return done


def status_counts(conn: psycopg.Connection, category: str) -> dict[str, int]:
    """Links of the category by status, as stored."""
    rows = conn.execute(
        "SELECT status, count(*) FROM raw_images WHERE category = %s GROUP BY status"
        " ORDER BY count(*) DESC",
        (category,),
    )
    return dict(rows.fetchall())


def failure_rate(counts: dict[str, int]) -> float:
    """The share of links that are not `ok`, from counts by status (0 when there are none)."""
    total = sum(counts.values())
    return (total - counts.get("ok", 0)) / total if total else 0.0
