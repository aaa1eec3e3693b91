"""Nearest-neighbour search over the stored DINOv2 vectors, through pgvector's HNSW index."""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

FILTERED_EF_SEARCH = 200
MAX_EF_SEARCH = 1000  # pgvector's limit; iterative scans go on past it for a larger k
EXACT_SCAN_MAX_IMAGES = 2000  # a category this small is ranked exactly, without the index


def nearest(
    conn: psycopg.Connection,
    query: np.ndarray,
    embedding_model: str,
    *,
    k: int = 10,
    category: str | None = None,
    after: tuple[float, str] | None = None,
    ef_search: int | None = None,
) -> list[tuple[str, float]]:
    """The `k` images (id, cosine distance) whose `embedding_model` vectors are nearest
    `query`, nearest first, ties by id; only images with a stored (status ok) file.

    Unfiltered, or with a category of more than `EXACT_SCAN_MAX_IMAGES` images, the ORDER BY
    matches the per-model partial HNSW index (`embedding::vector(d)`, cosine) and iterative
    index scans keep returning rows until `k` pass the filter. A smaller category is ranked
    exactly from its own rows: faster than filtering an index walk, and nothing is missed.
    ``after`` (distance, id) keeps only what ranks after it: the next page of a keyset cursor.
    ``ef_search`` overrides the HNSW beam (default: max(200, 4k) filtered, max(40, 2k) not,
    at most 1,000).
    """
    dim = int(query.shape[-1])
    vector_type = sql.SQL("vector({})").format(sql.Literal(dim))
    params = {
        "query": np.asarray(query, dtype=np.float32),
        "model": embedding_model,
        "k": k,
        "category": category,
        "after_distance": after[0] if after else None,
        "after_id": after[1] if after else None,
    }
    after_sql = sql.SQL(_AFTER if after else "").format(vt=vector_type)
    with conn.transaction():
        if ranks_exactly(conn, category):
            nearest_sql = sql.SQL(_EXACT_IN_CATEGORY).format(vt=vector_type, after=after_sql)
        else:
            in_category = sql.SQL(_IN_CATEGORY if category else "")
            nearest_sql = sql.SQL(_INDEX_WALK).format(
                vt=vector_type, in_category=in_category, after=after_sql
            )
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            if ef_search is None:
                # A filter discards candidates: a wider beam keeps recall near the unfiltered one.
                ef_search = max(FILTERED_EF_SEARCH, 4 * k) if category else max(40, 2 * k)
                ef_search = min(ef_search, MAX_EF_SEARCH)
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef_search)))
        statement = sql.SQL(
            """
            WITH nearest AS MATERIALIZED ({nearest})
            SELECT n.image_id, n.distance FROM nearest n
            WHERE EXISTS (SELECT 1 FROM raw_images r
                          WHERE r.image_id = n.image_id AND r.status = 'ok')
            ORDER BY n.distance, n.image_id
            """
        ).format(nearest=nearest_sql)
        return [(r[0], float(r[1])) for r in conn.execute(statement, params).fetchall()]


def ranks_exactly(conn: psycopg.Connection, category: str | None) -> bool:
    """Whether `nearest` ranks this category exactly instead of walking the index:
    a category with at most `EXACT_SCAN_MAX_IMAGES` stored images."""
    if not category:
        return False
    (size,) = conn.execute(
        "SELECT count(*) FROM raw_images WHERE category = %s AND status = 'ok'", (category,)
    ).fetchone()
    return size <= EXACT_SCAN_MAX_IMAGES


_AFTER = """
    AND (e.embedding::{vt} <=> %(query)s::{vt}, e.image_id)
        > (%(after_distance)s::float8, %(after_id)s::text)
"""
_INDEX_WALK = """
    SELECT e.image_id, e.embedding::{vt} <=> %(query)s::{vt} AS distance
    FROM image_embeddings e
    WHERE e.model = %(model)s {in_category} {after}
    ORDER BY e.embedding::{vt} <=> %(query)s::{vt}
    LIMIT %(k)s
"""
_IN_CATEGORY = """
    AND EXISTS (SELECT 1 FROM raw_images c WHERE c.image_id = e.image_id
                AND c.category = %(category)s AND c.status = 'ok')
"""
# The distances are computed in a subquery, so no index can serve the ORDER BY: every image
# of the category is ranked.
_EXACT_IN_CATEGORY = """
    SELECT image_id, distance FROM (
        SELECT e.image_id, e.embedding::{vt} <=> %(query)s::{vt} AS distance
        FROM (SELECT DISTINCT image_id FROM raw_images
              WHERE category = %(category)s AND status = 'ok') c
        JOIN image_embeddings e ON e.image_id = c.image_id AND e.model = %(model)s
        WHERE true {after}
        OFFSET 0
    ) ranked
    ORDER BY distance, image_id
    LIMIT %(k)s
"""
