"""Nearest-neighbour queries over the stored vectors, through pgvector's per-model HNSW
indexes: images by their DINOv2 vector (`nearest`), images by their texts' sentence vectors
(`nearest_images_by_text`: an image has several texts and ranks by its nearest one), and the
single-vector lookups the search engine needs."""

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
TEXTS_PER_IMAGE = 2  # text rows fetched per image wanted; more while too few images come


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
        "rows": k,
        "category": category,
        "after_distance": after[0] if after else None,
        "after_id": after[1] if after else None,
    }
    after_sql = sql.SQL(_AFTER if after else "").format(vt=cast)
    with conn.transaction():
        if ranks_exactly(conn, category):
            walk = sql.SQL(_EXACT_IN_CATEGORY).format(
                vt=cast, table=sql.Identifier("image_embeddings"), also=after_sql
            )
            walk = sql.SQL("{} ORDER BY distance, image_id LIMIT %(rows)s").format(walk)
        else:
            walk = _index_walk("image_embeddings", cast, category, after_sql)
            if ef_search is None:
                vectors = indexed_vectors(conn, embedding_model, dim, vector_type)
                ef_search = default_ef_search(k, filtered=bool(category), vectors=vectors)
            _set_beam(conn, ef_search)
        return _stored_only(conn, walk, params)


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
    A category of at most `EXACT_SCAN_MAX_IMAGES` images is ranked exactly."""
    exact = ranks_exactly(conn, category)
    rows = k * TEXTS_PER_IMAGE
    while True:
        found = _nearest_texts(conn, query, sentence_model, rows, category, random_prompts, exact)
        best: dict[str, float] = {}
        for image_id, distance in found:
            best.setdefault(image_id, distance)
        if len(best) >= k or len(found) < rows or exact:
            return sorted(best.items(), key=lambda pair: (pair[1], pair[0]))[:k]
        rows *= 4


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
    """About how many vectors the model's HNSW graph over image vectors holds (`_indexed`)."""
    name = hnsw_index_name("image_embeddings", "embedding", embedding_model, dim, vector_type)
    return _indexed(conn, name)


def ranks_exactly(conn: psycopg.Connection, category: str | None) -> bool:
    """Whether a category is ranked exactly instead of by walking the index: one with at
    most `EXACT_SCAN_MAX_IMAGES` stored images (counted no further: a large category's count
    would grow with it)."""
    if not category:
        return False
    (size,) = conn.execute(
        "SELECT count(*) FROM (SELECT FROM raw_images WHERE category = %s AND status = 'ok'"
        " LIMIT %s) counted",
        (category, EXACT_SCAN_MAX_IMAGES + 1),
    ).fetchone()
    return size <= EXACT_SCAN_MAX_IMAGES


def stored_vector(conn: psycopg.Connection, image_id: str, model: str) -> np.ndarray | None:
    """The `model` vector stored for one image, or None."""
    row = conn.execute(
        "SELECT embedding FROM image_embeddings WHERE image_id = %s AND model = %s",
        (image_id, model),
    ).fetchone()
    return None if row is None else row[0].to_numpy()


def vector_dimension(conn: psycopg.Connection, model: str) -> int | None:
    """The dimension of `model`'s stored image vectors, or None when it has none."""
    row = conn.execute(
        "SELECT vector_dims(embedding) FROM image_embeddings WHERE model = %s LIMIT 1", (model,)
    ).fetchone()
    return None if row is None else int(row[0])


def _nearest_texts(conn, query, model, rows, category, random_prompts, exact):
    dim = int(query.shape[-1])
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
            walk = sql.SQL(_EXACT_IN_CATEGORY).format(
                vt=cast, table=sql.Identifier("prompt_embeddings"), also=random
            )
        else:
            walk = _index_walk("prompt_embeddings", cast, category, random)
            name = hnsw_index_name("prompt_embeddings", "embedding", model, dim)
            # Leaving out the random captioner's texts is no reason for a wider beam: the
            # iterative scan goes on until enough rows pass (a 1,000 beam cost 4x a 300 one).
            _set_beam(
                conn, default_ef_search(rows, filtered=bool(category), vectors=_indexed(conn, name))
            )
        return _stored_only(conn, walk, params)


def _index_walk(table: str, cast: sql.Composable, category: str | None, also: sql.Composable):
    """The rows of ``table`` nearest the query in index order, filtered by ``also`` (and the
    category), ``rows`` of them: the ORDER BY the model's partial HNSW index serves."""
    return sql.SQL(_INDEX_WALK).format(
        vt=cast,
        table=sql.Identifier(table),
        in_category=sql.SQL(_IN_CATEGORY if category else ""),
        also=also,
    )


def _set_beam(conn: psycopg.Connection, ef_search: int) -> None:
    """Iterative index scans (rows filtered out are made up for) with this HNSW beam, for the
    rest of the transaction (`SET LOCAL` both, in one round trip)."""
    conn.execute(
        "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
        " set_config('hnsw.ef_search', %s, true)",
        (str(ef_search),),
    )


def _indexed(conn: psycopg.Connection, index: str) -> float:
    """About how many vectors an HNSW index holds: its pg_class.reltuples (set by the build,
    kept by VACUUM and ANALYZE); 0 without the index."""
    row = conn.execute(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", (index,)
    ).fetchone()
    return max(float(row[0]), 0.0) if row else 0.0


def _stored_only(conn: psycopg.Connection, walk: sql.Composable, params: dict):
    """(image id, distance) of the walk's rows whose image is stored (status ok), nearest
    first, ties by id (the walk is materialised first: the index serves it unfiltered)."""
    statement = sql.SQL(
        """
        WITH nearest AS MATERIALIZED ({walk})
        SELECT n.image_id, n.distance FROM nearest n
        WHERE EXISTS (SELECT 1 FROM raw_images r
                      WHERE r.image_id = n.image_id AND r.status = 'ok')
        ORDER BY n.distance, n.image_id
        """
    ).format(walk=walk)
    return [(r[0], float(r[1])) for r in conn.execute(statement, params).fetchall()]


_AFTER = """
    AND (e.embedding::{vt} <=> %(query)s::{vt}, e.image_id)
        > (%(after_distance)s::float8, %(after_id)s::text)
"""
_INDEX_WALK = """
    SELECT e.image_id, e.embedding::{vt} <=> %(query)s::{vt} AS distance
    FROM {table} e
    WHERE e.model = %(model)s {also} {in_category}
    ORDER BY e.embedding::{vt} <=> %(query)s::{vt}
    LIMIT %(rows)s
"""
_IN_CATEGORY = """
    AND EXISTS (SELECT 1 FROM raw_images c WHERE c.image_id = e.image_id
                AND c.category = %(category)s AND c.status = 'ok')
"""
# The distances are computed in a subquery, so no index can serve an ORDER BY over them:
# every row of the category is ranked.
_EXACT_IN_CATEGORY = """
    SELECT image_id, distance FROM (
        SELECT e.image_id, e.embedding::{vt} <=> %(query)s::{vt} AS distance
        FROM (SELECT DISTINCT image_id FROM raw_images
              WHERE category = %(category)s AND status = 'ok') c
        JOIN {table} e ON e.image_id = c.image_id AND e.model = %(model)s
        WHERE true {also}
        OFFSET 0
    ) ranked
"""
