"""The image store checked against `raw_images`: the store itself, damaged files, orphan files,
temporary files, row keys. Used before the model steps read files (`intact`), at the start of
each ingest (`require_store`, `sweep_orphan_files`) and by `featuregen db verify` (`verify_store`).

First of all the store must be there (`require_store`): with several hosts it is one shared
directory mounted at the same path on each, and a host where it is not mounted would otherwise
see every stored file as missing, mark every row `file_damaged` and download everything again.
The store carries a marker file, so an empty directory in its place is told from a store.

A damaged file (missing, empty, or no longer hashing to its name) turns its links' rows into
status `file_damaged`, so the next `raw_images` run downloads them again and `ImageStore.put`
rewrites the file; the feature rows of the image are kept (keyed by the image's hash, they are
right again once the bytes are).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from featuregen_assets.core.ingest.image_store import ImageStore, older_than, verify_file
from featuregen_assets.core.ingest.links import Tally

FILE_DAMAGED = "file_damaged"
ORPHAN_GRACE_S = 3600.0  # a file no row names is deleted once it is this old
STORE_MARKER = ".featuregen-store"
_SAMPLED_PATHS = 20  # recorded files looked for when a store has no marker yet


class StoreMissing(RuntimeError):
    """This host does not see the image store the database's rows point into."""


def require_store(conn: psycopg.Connection, root: Path) -> None:
    """Make sure `root` is the image store the database records images in, before anything
    reads, writes or marks files in it; raise `StoreMissing`, naming it, when it is not.

    The marker file is written on first use (no `ok` row points into `root`) and for a store an
    earlier featuregen filled (one of the files recorded there exists). Without the marker and
    without any recorded file, this host has an empty directory (or none) where the shared store
    should be mounted."""
    marker = root / STORE_MARKER
    if marker.exists():
        return
    recorded = [
        path
        for (path,) in conn.execute(
            "SELECT path FROM raw_images WHERE status = 'ok' AND starts_with(path, %s) LIMIT %s",
            (f"{root}/", _SAMPLED_PATHS),
        )
    ]
    if recorded and not any(Path(path).exists() for path in recorded):
        raise StoreMissing(
            f"the image store {root} is not on this host: {marker} is missing and so is"
            f" {recorded[0]}, which the database records. Mount the shared store at {root}"
            " on every host that runs steps (README: Several machines); if the store is lost,"
            f" create {marker} and the next raw_images runs download its images again"
        )
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        "featuregen image store: every host that runs steps must see this directory\n"
    )


def mark_damaged(conn: psycopg.Connection, image_id: str, path: str, reason: str) -> int:
    """Turn the `ok` rows of image `image_id` into `file_damaged`; return how many (committed)."""
    changed = conn.execute(
        "UPDATE raw_images SET status = %s, error = %s, image_id = NULL, updated_at = now()"
        " WHERE image_id = %s AND status = 'ok'",
        (FILE_DAMAGED, f"{path}: {reason}", image_id),
    ).rowcount
    conn.commit()
    return changed


def intact(
    conn: psycopg.Connection, rows: Sequence[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[str]]:
    """The `(image_id, path)` rows whose file still hashes to its id, and `<path>: <reason>` for
    each other one, whose rows are marked `file_damaged` (the next raw_images run fetches it).
    Raises `StoreMissing` first when this host lacks the store the rows point into."""
    for root in {Path(path).parents[1] for _, path in rows}:  # images/<ab>/<sha256>.<ext>
        require_store(conn, root)
    kept, damaged = [], []
    for image_id, path in rows:
        reason = verify_file(path, image_id)
        if reason is None:
            kept.append((image_id, path))
        else:
            mark_damaged(conn, image_id, path, reason)
            damaged.append(f"{path}: {reason}")
    return kept, damaged


def damaged_report(damaged: Sequence[str], limit: int = 1000) -> str:
    """One log message naming the damaged files (at most `limit` of them)."""
    shown = "\n".join(damaged[:limit])
    more = f"\n… {len(damaged) - limit} more" if len(damaged) > limit else ""
    return (
        f"skipped {len(damaged)} damaged stored files (their links are marked {FILE_DAMAGED};"
        f" the next raw_images run downloads them again):\n{shown}{more}"
    )


def recheck_category(conn: psycopg.Connection, category: str) -> Tally:
    """Mark `file_damaged` the category's `ok` rows whose file is missing or not of the size
    stored (a stat each, no read: `intact` and `verify_store` compare hashes)."""
    found = Tally()
    rows = conn.execute(
        "SELECT DISTINCT image_id, path, bytes FROM raw_images"
        " WHERE category = %s AND status = 'ok'",
        (category,),
    ).fetchall()
    for image_id, path, size in rows:
        try:
            actual = os.stat(path).st_size
        except FileNotFoundError:
            kind, detail = "missing file", "missing file"
        else:
            if actual == size:
                continue
            kind, detail = "size changed", f"{actual} bytes on disk, {size} downloaded"
        mark_damaged(conn, image_id, path, detail)
        found.add(kind, str(path))
    return found


def _referenced_paths(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT DISTINCT path FROM raw_images WHERE status = 'ok'")
    return {path for (path,) in rows}


def sweep_orphan_files(
    conn: psycopg.Connection, store: ImageStore, grace_s: float = ORPHAN_GRACE_S
) -> list[Path]:
    """Delete stored files no `ok` row names, once older than `grace_s`; return them."""
    referenced = _referenced_paths(conn)
    removed = []
    for path in store.files():
        if str(path) not in referenced and older_than(path, grace_s):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@dataclass
class StoreReport:
    """What `verify_store` found, and what it repaired."""

    rows: int = 0
    files: int = 0
    damaged: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    bad_keys: int = 0
    repeated_urls: int = 0
    orphan_feature_rows: int = 0
    repaired: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """How many things are wrong (repaired ones included)."""
        return (
            len(self.damaged)
            + len(self.orphan_files)
            + len(self.temp_files)
            + self.bad_keys
            + self.repeated_urls
            + self.orphan_feature_rows
        )

    def lines(self, limit: int = 20) -> list[str]:
        """A readable account, at most `limit` paths per kind."""
        out = [f"checked {self.rows} ok rows' files and {self.files} stored files"]
        for title, items in (
            ("damaged files", self.damaged),
            ("orphan files (no ok row names them)", self.orphan_files),
            ("temporary files", self.temp_files),
            ("repaired", self.repaired),
        ):
            if items:
                out.append(f"{title}: {len(items)}")
                out += [f"  {item}" for item in items[:limit]]
                if len(items) > limit:
                    out.append(f"  … {len(items) - limit} more")
        if self.bad_keys:
            out.append(f"rows whose url_key is not the sha256 of their url: {self.bad_keys}")
        if self.repeated_urls:
            out.append(f"(category, url) pairs with more than one row: {self.repeated_urls}")
        if self.orphan_feature_rows:
            out.append(
                f"prompt/embedding rows of images no raw_images row has: {self.orphan_feature_rows}"
                " (kept: a later download of the image makes them current again)"
            )
        if not self.problems:
            out.append("no problems found")
        return out


_BAD_KEYS = """
SELECT count(*) FROM raw_images
WHERE url_key <> encode(sha256(convert_to(url, 'UTF8')), 'hex') AND status <> 'url_too_long'
"""
_REPEATED_URLS = """
SELECT count(*) FROM (
    SELECT 1 FROM raw_images WHERE status <> 'url_too_long'
    GROUP BY category, url HAVING count(*) > 1) repeated
"""
_ORPHAN_FEATURE_ROWS = """
SELECT (SELECT count(*) FROM image_prompts p
        WHERE NOT EXISTS (SELECT 1 FROM raw_images r WHERE r.image_id = p.image_id))
     + (SELECT count(*) FROM image_embeddings e
        WHERE NOT EXISTS (SELECT 1 FROM raw_images r WHERE r.image_id = e.image_id))
"""


def verify_store(
    conn: psycopg.Connection,
    store: ImageStore,
    *,
    repair: bool = False,
    grace_s: float = ORPHAN_GRACE_S,
) -> StoreReport:
    """Check every `ok` row's file by its sha256, every stored file for a row naming it, and
    the temporary files; with `repair`, mark damaged files' rows `file_damaged` (and delete
    the files), delete orphan files older than `grace_s` and temporary files of dead writers."""
    require_store(conn, store.root)
    report = StoreReport()
    images = conn.execute(
        "SELECT DISTINCT image_id, path FROM raw_images WHERE status = 'ok' ORDER BY path"
    ).fetchall()
    report.rows = len(images)
    for image_id, path in images:
        reason = verify_file(path, image_id)
        if reason is None:
            continue
        report.damaged.append(f"{path}: {reason}")
        if repair:
            rows = mark_damaged(conn, image_id, path, reason)
            Path(path).unlink(missing_ok=True)
            report.repaired.append(f"{path}: deleted, {rows} rows marked {FILE_DAMAGED}")
    referenced = {path for _, path in images}
    for path in store.files():
        report.files += 1
        if str(path) in referenced:
            continue
        report.orphan_files.append(str(path))
        if repair and older_than(path, grace_s):
            path.unlink(missing_ok=True)
            report.repaired.append(f"{path}: orphan deleted")
    for tmp, alive in store.temp_files():
        report.temp_files.append(str(tmp) + (" (its writer is running)" if alive else ""))
        if repair and not alive:
            tmp.unlink(missing_ok=True)
            report.repaired.append(f"{tmp}: temporary file of a dead writer deleted")
    report.bad_keys = conn.execute(_BAD_KEYS).fetchone()[0]
    report.repeated_urls = conn.execute(_REPEATED_URLS).fetchone()[0]
    report.orphan_feature_rows = conn.execute(_ORPHAN_FEATURE_ROWS).fetchone()[0]
    return report
