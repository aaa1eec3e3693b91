"""Nearest-neighbour search over the stored DINOv2 vectors, through pgvector's HNSW index."""

from __future__ import annotations

import math

import numpy as np
import psycopg
from psycopg import sql

from featuregen_assets.core.store.table_writes import VECTOR_TYPE, hnsw_index_name

UNFILTERED_EF_SEARCH, FILTERED_EF_SEARCH = 40, 200
# Up to this many vectors in a model's graph the beams above keep recall@10 at 0.99 (64-d);
# beyond it they grow 4x per 10x vectors: at 1,000,000, 160 brought it from 0.93 back to 0.97.
EF_SEARCH_BASE_VECTORS = 100_000
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
    vector_type: str = VECTOR_TYPE,
) -> list[tuple[str, float]]:
    """The `k` images (id, cosine distance) whose `embedding_model` vectors are nearest
    `query`, nearest first, ties by id; only images with a stored (status ok) file.

    Unfiltered, or with a category of more than `EXACT_SCAN_MAX_IMAGES` images, the ORDER BY
    matches the per-model partial HNSW index (`embedding::vector(d)`, cosine) and iterative
    index scans keep returning rows until `k` pass the filter. A smaller category is ranked
    exactly from its own rows: faster than filtering an index walk, and nothing is missed.
    ``after`` (distance, id) keeps only what ranks after it: the next page of a keyset cursor.
    ``ef_search`` overrides the HNSW beam (default: `default_ef_search`); ``vector_type``
    is the type the model's index compares vectors as (`ensure_hnsw_indexes`).
    """
    dim = int(query.shape[-1])
    cast = sql.SQL("{}({})").format(sql.SQL(vector_type), sql.Literal(dim))
    params = {
        "query": np.asarray(query, dtype=np.float32),
        "model": embedding_model,
        "k": k,
        "category": category,
        "after_distance": after[0] if after else None,
        "after_id": after[1] if after else None,
    }
    after_sql = sql.SQL(_AFTER if after else "").format(vt=cast)
    with conn.transaction():
        if ranks_exactly(conn, category):
            nearest_sql = sql.SQL(_EXACT_IN_CATEGORY).format(vt=cast, after=after_sql)
        else:
            in_category = sql.SQL(_IN_CATEGORY if category else "")
            nearest_sql = sql.SQL(_INDEX_WALK).format(
                vt=cast, in_category=in_category, after=after_sql
            )
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            if ef_search is None:
                vectors = indexed_vectors(conn, embedding_model, dim, vector_type)
                ef_search = default_ef_search(k, filtered=bool(category), vectors=vectors)
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


def default_ef_search(k: int, *, filtered: bool, vectors: float) -> int:
    """The HNSW beam for `k` hits in a graph of about `vectors` vectors: max(40, 2k), or
    max(200, 4k) with a filter (it discards candidates), times 4 per 10x vectors beyond
    `EF_SEARCH_BASE_VECTORS` (recall falls as the graph grows); at most 1,000."""
    beam = max(FILTERED_EF_SEARCH, 4 * k) if filtered else max(UNFILTERED_EF_SEARCH, 2 * k)
    growth = max(1.0, vectors / EF_SEARCH_BASE_VECTORS) ** math.log10(4)
    return min(round(beam * growth), MAX_EF_SEARCH)


def indexed_vectors(
    conn: psycopg.Connection, embedding_model: str, dim: int, vector_type: str = VECTOR_TYPE
) -> float:
    """About how many vectors the model's HNSW graph holds: its partial index's
    pg_class.reltuples (set by the build, kept by VACUUM and ANALYZE); 0 without one."""
    name = hnsw_index_name("image_embeddings", "embedding", embedding_model, dim, vector_type)
    row = conn.execute(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", (name,)
    ).fetchone()
    return max(float(row[0]), 0.0) if row else 0.0


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
