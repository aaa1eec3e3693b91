"""Upkeep of the stored vectors: those that still live out of line, in TOAST."""

from __future__ import annotations

import psycopg
from psycopg import sql

from featuregen_assets.core.store import db


def out_of_line_bytes(conn: psycopg.Connection, table: str = "image_embeddings") -> int:
    """Bytes of `table`'s TOAST table: vectors stored before they were kept in the row."""
    row = conn.execute(
        "SELECT coalesce(pg_relation_size(reltoastrelid), 0) FROM pg_class"
        " WHERE oid = to_regclass(%s)",
        (table,),
    ).fetchone()
    return row[0] if row else 0


def move_vectors_into_rows(url: str, table: str = "image_embeddings") -> tuple[int, int]:
    """Rewrite `table` (``VACUUM FULL``) so every vector is stored in its row, as the column's
    storage (MAIN, migration 3) asks of new ones; returns the out-of-line bytes before and after.

    The table is locked for the rewrite and its indexes, HNSW ones included, are rebuilt.
    """
    with db.connect(url, autocommit=True) as conn:
        before = out_of_line_bytes(conn, table)
        if before:
            conn.execute(sql.SQL("VACUUM (FULL, ANALYZE) {}").format(sql.Identifier(table)))
        return before, out_of_line_bytes(conn, table)
