"""Ingest a category's link file: download what is missing and record one row per link."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from featuregen_assets.core.ingest.download import (
    DownloadResult,
    DownloadSettings,
    Progress,
    download_links,
)
from featuregen_assets.core.ingest.image_store import ImageStore
from featuregen_assets.core.ingest.links import BadLine, Link, LinkFile, unique_links

BATCH_SIZE = 256

_UPSERT = """
INSERT INTO raw_images AS r
    (category, url, status, error, image_id, path, width, height, mime, format, bytes, caption)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (category, url) DO UPDATE SET
    status = EXCLUDED.status, error = EXCLUDED.error, image_id = EXCLUDED.image_id,
    path = EXCLUDED.path, width = EXCLUDED.width, height = EXCLUDED.height,
    mime = EXCLUDED.mime, format = EXCLUDED.format, bytes = EXCLUDED.bytes,
    caption = coalesce(EXCLUDED.caption, r.caption),
    attempts = r.attempts + 1, updated_at = now()
WHERE r.status <> 'ok' OR EXCLUDED.status = 'ok'
"""


@dataclass
class IngestSummary:
    """What one ingest of a link file did."""

    category: str
    links: int = 0
    skipped_ok: int = 0
    attempted: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    bad_lines: list[BadLine] = field(default_factory=list)
    duplicates: int = 0


def ok_urls(conn: psycopg.Connection, category: str) -> set[str]:
    """URLs of the category already downloaded successfully."""
    rows = conn.execute(
        "SELECT url FROM raw_images WHERE category = %s AND status = 'ok'", (category,)
    )
    return {url for (url,) in rows}


def _row(category: str, result: DownloadResult, caption: str | None) -> tuple:
    return (
        category,
        result.url,
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
    )


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
) -> IngestSummary:
    """Download the links of `path` not yet `ok` (all when `force`) and upsert their rows.

    Rows are committed in batches as downloads finish, so an interrupted run keeps its
    progress; a link that was `ok` is never downgraded by a later failure.
    """
    summary = IngestSummary(category=category)
    done = set() if force else ok_urls(conn, category)
    captions: dict[str, str | None] = {}

    def pending() -> Iterator[Link]:
        for link in unique_links(path, summary):
            summary.links += 1
            if link.url in done:
                summary.skipped_ok += 1
                continue
            captions[link.url] = link.caption
            yield link

    counted = LinkFile(category)  # a first streaming pass, for the progress total
    total = sum(1 for link in unique_links(path, counted) if link.url not in done)
    batch: list[tuple] = []
    store.sweep_orphans()
    results = download_links(
        pending(),
        store,
        settings,
        on_progress=on_progress,
        progress_every_s=progress_every_s,
        total=total,
    )
    for result in results:
        summary.attempted += 1
        summary.statuses[result.status] += 1
        batch.append(_row(category, result, captions.pop(result.url, None)))
        if len(batch) >= BATCH_SIZE:
            _write(conn, batch)
    _write(conn, batch)
    return summary


def _write(conn: psycopg.Connection, batch: list[tuple]) -> None:
    if batch:
        with conn.cursor() as cur:
            cur.executemany(_UPSERT, batch)
        conn.commit()
        batch.clear()


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
