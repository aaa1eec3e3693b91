"""Nearest-neighbour search over the stored sentence vectors of image texts (pgvector HNSW).

An image has several texts (its link captions, its generated prompts), so the nearest texts
are walked in the model's HNSW index and each image ranks by its nearest one."""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from featuregen_assets.core.store.search import default_ef_search, ranks_exactly
from featuregen_assets.core.store.table_writes import hnsw_index_name

TEXTS_PER_IMAGE = 2  # rows fetched per image wanted; more are fetched while too few images come


def nearest_images_by_text(
    conn: psycopg.Connection,
    query: np.ndarray,
    sentence_model: str,
    *,
    k: int,
    category: str | None = None,
    random_prompts: bool = False,
) -> list[tuple[str, float]]:
    """The `k` images (id, cosine distance of their nearest text) whose texts' vectors from
    `sentence_model` are nearest `query`, nearest first, ties by id; only images with a
    stored file. Texts of a random-weight captioner count only with ``random_prompts``.
    A category of at most `store.search.EXACT_SCAN_MAX_IMAGES` images is ranked exactly."""
    dim = int(query.shape[-1])
    exact = ranks_exactly(conn, category)
    rows = k * TEXTS_PER_IMAGE
    while True:
        found = _nearest_texts(
            conn, query, sentence_model, dim, rows, category, random_prompts, exact
        )
        best: dict[str, float] = {}
        for image_id, distance in found:
            best.setdefault(image_id, distance)
        if len(best) >= k or len(found) < rows or exact:
            ranked = sorted(best.items(), key=lambda pair: (pair[1], pair[0]))
            return ranked[:k]
        rows *= 4


def _nearest_texts(conn, query, model, dim, rows, category, random_prompts, exact):
    cast = sql.SQL("vector({})").format(sql.Literal(dim))
    random = sql.SQL("" if random_prompts else "AND NOT e.random_weights")
    params = {
        "query": np.asarray(query, dtype=np.float32),
        "model": model,
        "rows": rows,
        "category": category,
    }
    with conn.transaction():
        if exact:
            nearest = sql.SQL(_EXACT_IN_CATEGORY).format(vt=cast, random=random)
        else:
            in_category = sql.SQL(_IN_CATEGORY if category else "")
            nearest = sql.SQL(_INDEX_WALK).format(vt=cast, random=random, in_category=in_category)
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            name = hnsw_index_name("prompt_embeddings", "embedding", model, dim)
            row = conn.execute(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", (name,)
            ).fetchone()
            vectors = max(float(row[0]), 0.0) if row else 0.0
            # Leaving out the random captioner's texts is no reason for a wider beam: the
            # iterative scan goes on until enough rows pass (a 1,000 beam cost 4x a 300 one).
            ef = default_ef_search(rows, filtered=bool(category), vectors=vectors)
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef)))
        statement = sql.SQL(
            """
            WITH nearest AS MATERIALIZED ({nearest})
            SELECT n.image_id, n.distance FROM nearest n
            WHERE EXISTS (SELECT 1 FROM raw_images r
                          WHERE r.image_id = n.image_id AND r.status = 'ok')
            ORDER BY n.distance, n.image_id
            """
        ).format(nearest=nearest)
        return [(r[0], float(r[1])) for r in conn.execute(statement, params).fetchall()]


_INDEX_WALK = """
    SELECT e.image_id, e.embedding::{vt} <=> %(query)s::{vt} AS distance
    FROM prompt_embeddings e
    WHERE e.model = %(model)s {random} {in_category}
    ORDER BY e.embedding::{vt} <=> %(query)s::{vt}
    LIMIT %(rows)s
"""
_IN_CATEGORY = """
    AND EXISTS (SELECT 1 FROM raw_images c WHERE c.image_id = e.image_id
                AND c.category = %(category)s AND c.status = 'ok')
"""
_EXACT_IN_CATEGORY = """
    SELECT image_id, distance FROM (
        SELECT e.image_id, e.embedding::{vt} <=> %(query)s::{vt} AS distance
        FROM (SELECT DISTINCT image_id FROM raw_images
              WHERE category = %(category)s AND status = 'ok') c
        JOIN prompt_embeddings e ON e.image_id = c.image_id AND e.model = %(model)s
        WHERE true {random}
        OFFSET 0
    ) ranked
"""
