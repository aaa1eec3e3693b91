"""The image store checked against `raw_images`: the store itself, damaged files, orphan files,
temporary files, row keys. Used before the model steps read files (`intact`), at the start of
each ingest (`require_store`, `sweep_orphan_files`) and by `featuregen db verify` (`verify_store`).

First of all the store must be there (`require_store`): with several hosts it is one shared
directory mounted at the same path on each, and a host where it is not mounted would otherwise
see every stored file as missing, mark every row `file_damaged` and download everything again.
The store carries a marker file, so an empty directory in its place is told from a store.

A damaged file (missing, empty, or no longer hashing to its name) turns its links' rows into
status `file_damaged` (in a category's run, that category's rows only), so the next
`raw_images` run downloads them again and `ImageStore.put` rewrites the file; the feature rows
of the image are kept (keyed by the image's hash, they are right again once the bytes are).
A file whose bytes cannot be read at all (no permission, an I/O error) is not damaged: it is
reported and left alone, its rows untouched, and nothing here deletes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from featuregen_assets.core.ingest.image_store import (
    FileProblem,
    ImageStore,
    older_than,
    remove_if_damaged,
    verify_file,
)
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
            " on every host that runs steps (docs/operations.md); if the store is lost,"
            f" create {marker} and the next raw_images runs download its images again"
        )
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        "featuregen image store: every host that runs steps must see this directory\n"
    )


def mark_damaged(
    conn: psycopg.Connection, image_id: str, path: str, reason: str, category: str | None
) -> int:
    """Turn the `ok` rows of image `image_id` into `file_damaged`, those of `category` only when
    one is given; return how many (committed). The rows keep their path: the orphan sweep gives
    the file its grace period from now."""
    changed = conn.execute(
        "UPDATE raw_images SET status = %s, error = %s, image_id = NULL, updated_at = now()"
        " WHERE image_id = %s AND status = 'ok' AND (%s::text IS NULL OR category = %s)",
        (FILE_DAMAGED, f"{path}: {reason}", image_id, category, category),
    ).rowcount
    conn.commit()
    return changed


def intact(
    conn: psycopg.Connection, rows: Sequence[tuple[str, str]], category: str | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """The `(image_id, path)` rows whose file still hashes to its id, and `<path>: <reason>` for
    each other one. A damaged file's rows (of `category` only, when given) are marked
    `file_damaged`, so the next raw_images run fetches it; an unreadable one is left as it is.
    Raises `StoreMissing` first when this host lacks the store the rows point into."""
    for root in {Path(path).parents[1] for _, path in rows}:  # images/<ab>/<sha256>.<ext>
        require_store(conn, root)
    kept, skipped = [], []
    for image_id, path in rows:
        problem = verify_file(path, image_id)
        if problem is None:
            kept.append((image_id, path))
            continue
        if problem.damaged:
            mark_damaged(conn, image_id, path, problem.reason, category)
        skipped.append(f"{path}: {problem}")
    return kept, skipped


def damaged_report(skipped: Sequence[str], limit: int = 1000) -> str:
    """One log message naming the damaged or unreadable files skipped (at most `limit`)."""
    shown = "\n".join(skipped[:limit])
    more = f"\n… {len(skipped) - limit} more" if len(skipped) > limit else ""
    return (
        f"skipped {len(skipped)} stored files: a damaged file's links are marked {FILE_DAMAGED}"
        " (the next raw_images run downloads them again); an unreadable file is left as it is"
        f" (give this process read access to it):\n{shown}{more}"
    )


@dataclass
class Recheck:
    """What `recheck_category` found: files marked damaged and files it could not read, by
    reason; how many files it hashed because their size or modification time had changed."""

    damaged: Tally = field(default_factory=Tally)
    unreadable: Tally = field(default_factory=Tally)
    hashed: int = 0


_MTIME_BATCH = 256
_CATEGORY_FILES = """
SELECT image_id, path, bytes, array_agg(DISTINCT file_mtime_ns) FROM raw_images
WHERE category = %s AND status = 'ok' GROUP BY image_id, path, bytes
"""


def recheck_category(conn: psycopg.Connection, category: str) -> Recheck:
    """Check the category's stored files cheaply: a stat each; a file whose size or
    modification time differs from what its rows recorded is hashed. A missing, resized or
    changed file's rows of this category are marked `file_damaged` (so this run downloads them
    again); a file that cannot be read is counted and left alone; a file whose bytes still hash
    to its id gets its new modification time recorded."""
    found = Recheck()
    intact_files: list[tuple[int, str, str]] = []
    for image_id, path, size, mtimes in conn.execute(_CATEGORY_FILES, (category,)).fetchall():
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            problem = FileProblem("missing file", damaged=True)
        except OSError as exc:
            problem = FileProblem(f"unreadable file ({exc.strerror or exc})", damaged=False)
        else:
            if stat.st_size != size:
                detail = f"size changed ({stat.st_size} bytes on disk, {size} downloaded)"
                problem = FileProblem(detail, damaged=True)
            elif mtimes == [stat.st_mtime_ns]:
                continue
            else:
                found.hashed += 1
                problem = verify_file(path, image_id)
                if problem is None:
                    intact_files.append((stat.st_mtime_ns, category, image_id))
                    if len(intact_files) >= _MTIME_BATCH:
                        _record_mtimes(conn, intact_files)
                    continue
        if problem.damaged:
            mark_damaged(conn, image_id, path, problem.reason, category)
            found.damaged.add(problem.reason.split(" (")[0], str(path))
        else:
            found.unreadable.add(problem.reason, str(path))
    _record_mtimes(conn, intact_files)
    return found


def _record_mtimes(conn: psycopg.Connection, files: list[tuple[int, str, str]]) -> None:
    """Record `(mtime_ns, category, image_id)` of files found intact, committed; clear them."""
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE raw_images SET file_mtime_ns = %s"
            " WHERE category = %s AND image_id = %s AND status = 'ok'",
            files,
        )
    conn.commit()
    files.clear()


_REFERENCED_PATHS = """
SELECT DISTINCT path FROM raw_images
WHERE path IS NOT NULL AND (status = 'ok' OR updated_at > now() - make_interval(secs => %s))
"""


def referenced_paths(conn: psycopg.Connection, grace_s: float) -> set[str]:
    """Files some `ok` row names, and those a row named until less than `grace_s` ago (its
    link failed or its file was found damaged since: the grace period counts from then)."""
    return {path for (path,) in conn.execute(_REFERENCED_PATHS, (grace_s,))}


def sweep_orphan_files(
    conn: psycopg.Connection, store: ImageStore, grace_s: float = ORPHAN_GRACE_S
) -> list[Path]:
    """Delete stored files no row names, once older than `grace_s` (by their modification time
    and by when a row last named them); return them."""
    referenced = referenced_paths(conn, grace_s)
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
    unreadable: list[str] = field(default_factory=list)
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
            + len(self.unreadable)
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
            ("unreadable files (left as they are: give featuregen read access)", self.unreadable),
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
    the temporary files; with `repair`, mark damaged files' rows `file_damaged` and delete the
    files (only a file whose bytes were read and do not hash to its name; an unreadable file is
    reported and left alone), delete orphan files no row named in the last `grace_s` and
    older than that, and temporary files of dead writers."""
    require_store(conn, store.root)
    report = StoreReport()
    images = conn.execute(
        "SELECT DISTINCT image_id, path FROM raw_images WHERE status = 'ok' ORDER BY path"
    ).fetchall()
    report.rows = len(images)
    for image_id, path in images:
        problem = verify_file(path, image_id)
        if problem is None:
            continue
        if not problem.damaged:
            report.unreadable.append(f"{path}: {problem}")
            continue
        report.damaged.append(f"{path}: {problem}")
        if repair:
            rows = mark_damaged(conn, image_id, path, problem.reason, None)
            deleted = "deleted, " if remove_if_damaged(Path(path), image_id) else ""
            report.repaired.append(f"{path}: {deleted}{rows} rows marked {FILE_DAMAGED}")
    named = {path for _, path in images}
    recently_named = referenced_paths(conn, grace_s)
    for path in store.files():
        report.files += 1
        if str(path) in named:
            continue
        report.orphan_files.append(str(path))
        if repair and str(path) not in recently_named and older_than(path, grace_s):
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
