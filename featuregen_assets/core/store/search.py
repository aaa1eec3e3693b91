"""Nearest-neighbour search over the stored DINOv2 vectors, through pgvector's HNSW index."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import psycopg
from psycopg import sql

FILTERED_EF_SEARCH = 200
EXACT_SCAN_MAX_IMAGES = 2000  # a category this small is ranked exactly, without the index


@dataclass(frozen=True)
class SearchHit:
    """One image found: score (cosine similarity), file, link, category, prompt, link caption."""

    image_id: str
    score: float
    path: str
    url: str
    category: str
    prompt: str | None
    caption: str | None

    def as_dict(self) -> dict:
        """The hit as a JSON-ready dict."""
        return asdict(self)


def search_vectors(
    conn: psycopg.Connection,
    query: np.ndarray,
    embedding_model: str,
    *,
    k: int = 10,
    category: str | None = None,
    ef_search: int | None = None,
) -> list[SearchHit]:
    """The `k` images whose `embedding_model` vectors are nearest `query` by cosine.

    Unfiltered, or with a category of more than `EXACT_SCAN_MAX_IMAGES` images, the ORDER BY
    matches the per-model partial HNSW index (`embedding::vector(d)`, cosine) and iterative
    index scans keep returning rows until `k` pass the filter. A smaller category is ranked
    exactly from its own rows: faster than filtering an index walk, and nothing is missed.
    ``ef_search`` overrides the HNSW beam (default: max(200, 4k) filtered, max(40, 2k) not).
    """
    dim = int(query.shape[-1])
    vector_type = sql.SQL("vector({})").format(sql.Literal(dim))
    params = {
        "query": np.asarray(query, dtype=np.float32),
        "model": embedding_model,
        "k": k,
        "category": category,
    }
    with conn.transaction():
        if ranks_exactly(conn, category):
            nearest = sql.SQL(_EXACT_IN_CATEGORY).format(vt=vector_type)
        else:
            in_category = sql.SQL(_IN_CATEGORY if category else "")
            nearest = sql.SQL(_INDEX_WALK).format(vt=vector_type, in_category=in_category)
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            if ef_search is None:
                # A filter discards candidates: a wider beam keeps recall near the unfiltered one.
                ef_search = max(FILTERED_EF_SEARCH, 4 * k) if category else max(40, 2 * k)
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef_search)))
        statement = sql.SQL(
            """
            WITH nearest AS MATERIALIZED ({nearest})
            SELECT n.image_id, 1 - n.distance, r.path, r.url, r.category,
                   (SELECT p.prompt FROM image_prompts p
                    WHERE p.image_id = n.image_id AND p.source = 'generated'
                    ORDER BY p.created_at DESC LIMIT 1),
                   r.caption
            FROM nearest n
            CROSS JOIN LATERAL (
                SELECT path, url, category, caption FROM raw_images r
                WHERE r.image_id = n.image_id AND r.status = 'ok'
                ORDER BY (r.category = %(category)s) DESC NULLS LAST, r.category, r.url
                LIMIT 1
            ) r
            ORDER BY n.distance
            """
        ).format(nearest=nearest)
        rows = conn.execute(statement, params).fetchall()
    return [SearchHit(r[0], float(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]


def ranks_exactly(conn: psycopg.Connection, category: str | None) -> bool:
    """Whether `search_vectors` ranks this category exactly instead of walking the index:
    a category with at most `EXACT_SCAN_MAX_IMAGES` stored images."""
    if not category:
        return False
    (size,) = conn.execute(
        "SELECT count(*) FROM raw_images WHERE category = %s AND status = 'ok'", (category,)
    ).fetchone()
    return size <= EXACT_SCAN_MAX_IMAGES


_INDEX_WALK = """
    SELECT e.image_id, e.embedding::{vt} <=> %(query)s::{vt} AS distance
    FROM image_embeddings e
    WHERE e.model = %(model)s {in_category}
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
        OFFSET 0
    ) ranked
    ORDER BY distance
    LIMIT %(k)s
"""


def search_text(
    conn: psycopg.Connection, query: str, *, k: int = 10, category: str | None = None
) -> list[SearchHit]:
    """Encode `query` with the newest registered aligned text encoder and search its space."""
    from featuregen_assets.core.store.registry import latest_model
    from featuregen_assets.core.training.alignment import AlignedTextEncoder

    model = latest_model(conn, "aligned_text_encoder")
    if model is None:
        raise LookupError("no aligned text encoder is registered: materialise aligned_text_encoder")
    encoder = AlignedTextEncoder.load(model.path)
    vector = encoder.encode([query])[0]
    return search_vectors(conn, vector, model.embedding_model, k=k, category=category)


def search_image(
    conn: psycopg.Connection, embedder, path: str, *, k: int = 10, category: str | None = None
) -> list[SearchHit]:
    """Images most like the image at `path`, by the DINOv2 vectors of `embedder`'s model."""
    stored = conn.execute(
        "SELECT 1 FROM image_embeddings WHERE model = %s LIMIT 1", (embedder.key,)
    ).fetchone()
    if stored is None:
        raise LookupError(f"no images are embedded by {embedder.key}")
    [(_, vector, error)] = list(embedder.embed_files([path]))
    if vector is None:
        raise ValueError(f"cannot embed {path}: {error}")
    return search_vectors(conn, vector, embedder.key, k=k, category=category)
