"""nearest() against a brute-force ranking, through the index walk and the exact path."""

from __future__ import annotations

import numpy as np
import pytest
from psycopg import sql

from featuregen_assets.core.search.hits import load_hits
from featuregen_assets.core.store import db
from featuregen_assets.core.store import nearest as search
from featuregen_assets.core.store.nearest import default_ef_search, indexed_vectors, nearest
from featuregen_assets.core.store.table import Table
from featuregen_assets.core.store.table_writes import (
    INDEX_MEMORY_MAX_MB,
    INDEX_MEMORY_MIN_MB,
    TableName,
    copy_rows,
    ensure_hnsw_indexes,
    hnsw_index_name,
    identifier,
    index_memory_mb,
)

MODEL = "test/dinov2@00000000"
DIM = 16
EMBEDDINGS = TableName("public", "image_embeddings")


@pytest.fixture
def store(database_url: str):
    """80 unit vectors: 'big' holds 60 images, 'small' 20, and image 0 is in both."""
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(80, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"img{i:02d}" for i in range(80)]
    rows = [("big" if i < 60 else "small", f"http://x/{i}", ids[i]) for i in range(80)]
    rows.append(("small", "http://x/0-again", ids[0]))
    with db.connection(database_url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO raw_images (category, url, status, image_id, path)"
                " VALUES (%s, %s, 'ok', %s, '')",
                rows,
            )
            cur.executemany(
                "INSERT INTO image_embeddings (image_id, model, embedding) VALUES (%s, %s, %s)",
                [(ids[i], MODEL, vectors[i]) for i in range(80)],
            )
        embeddings = Table({"model": [MODEL], "embedding": vectors[:1]})
        ensure_hnsw_indexes(conn, EMBEDDINGS, embeddings, "model")
        conn.commit()
        members = {
            "big": set(range(60)),
            "small": set(range(60, 80)) | {0},
            None: set(range(80)),
        }
        yield conn, vectors, ids, members


@pytest.mark.parametrize("category", [None, "big", "small"])
def test_search_returns_the_brute_force_nearest(store, monkeypatch, category) -> None:
    monkeypatch.setattr(search, "EXACT_SCAN_MAX_IMAGES", 30)  # 'small' exact, 'big' by index
    conn, vectors, ids, members = store
    query = vectors[3] + 0.3 * vectors[70]
    query /= np.linalg.norm(query)
    allowed = sorted(members[category])
    truth = sorted(allowed, key=lambda i: -float(vectors[i] @ query))[:5]
    found = nearest(conn, query, MODEL, k=5, category=category)
    assert [image_id for image_id, _ in found] == [ids[i] for i in truth]
    np.testing.assert_allclose([1 - d for _, d in found], vectors[truth] @ query, atol=1e-5)
    hits = load_hits(conn, found, category=category, query=query, embedding_model=MODEL)
    np.testing.assert_allclose([h.cosine for h in hits], vectors[truth] @ query, atol=1e-5)
    if category:
        assert {h.category for h in hits} == {category}  # image 0 is reported in its category


@pytest.mark.parametrize("category", [None, "big", "small"])
def test_pages_after_a_key_continue_the_ranking(store, monkeypatch, category) -> None:
    monkeypatch.setattr(search, "EXACT_SCAN_MAX_IMAGES", 30)
    conn, vectors, _, members = store
    whole = nearest(conn, vectors[9], MODEL, k=80, category=category)
    assert len(whole) == len(members[category])
    paged, after = [], None
    while page := nearest(conn, vectors[9], MODEL, k=7, category=category, after=after):
        paged += page
        after = page[-1][1], page[-1][0]
    assert paged == whole


def _index_scans(conn) -> int:
    """Scans of the HNSW indexes so far, this session's included."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    (scans,) = conn.execute(
        "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes"
        " WHERE indexrelname LIKE 'image_embeddings_hnsw_%'"
    ).fetchone()
    conn.commit()
    return int(scans)


@pytest.mark.parametrize(
    ("bound", "small", "big"),
    [(20, False, False), (21, True, False), (59, True, False), (60, True, True)],
)
def test_a_category_is_ranked_exactly_up_to_the_bound(
    store, monkeypatch, bound, small, big
) -> None:
    conn = store[0]
    monkeypatch.setattr(search, "EXACT_SCAN_MAX_IMAGES", bound)
    assert search.ranks_exactly(conn, "small") is small  # 21 stored rows
    assert search.ranks_exactly(conn, "big") is big  # 60


def test_small_categories_are_ranked_without_the_index(store, monkeypatch) -> None:
    conn, vectors, _, _ = store
    monkeypatch.setattr(search, "EXACT_SCAN_MAX_IMAGES", 30)
    conn.execute("SET enable_seqscan = off")  # 80 rows: the planner would scan them all
    conn.commit()
    before = _index_scans(conn)
    nearest(conn, vectors[1], MODEL, k=5, category="small")
    assert _index_scans(conn) == before
    nearest(conn, vectors[1], MODEL, k=5, category="big")
    assert _index_scans(conn) == before + 1


def test_the_default_beam_grows_with_the_vectors_in_the_models_graph(store) -> None:
    conn, *_ = store
    assert indexed_vectors(conn, MODEL, DIM) == 80  # the index build counted them
    assert indexed_vectors(conn, MODEL, 32) == indexed_vectors(conn, "other", DIM) == 0
    assert default_ef_search(10, filtered=False, vectors=100_000) == 40
    assert default_ef_search(10, filtered=True, vectors=100_000) == 200
    assert default_ef_search(100, filtered=False, vectors=80) == 200
    assert default_ef_search(10, filtered=False, vectors=1_000_000) == 160
    assert default_ef_search(10, filtered=True, vectors=1_000_000) == 800
    assert default_ef_search(10, filtered=True, vectors=10_000_000) == 1000


def test_a_larger_graph_gets_the_beam_that_keeps_its_recall(database_url, monkeypatch) -> None:
    """A coarse graph (m 8) of 3,000 random 32-d vectors, counted as 10x the base size:
    search walks it with beam 160 (recall@10 ~0.99 over builds), where 40 found ~0.86."""
    n, dim, k = 3000, 32, 10
    model = "test/coarse@00000000"
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(30, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = [f"v{i:04d}" for i in range(n)]
    truth = [{ids[i] for i in np.argsort(-(vectors @ q))[:k]} for q in queries]
    with db.connection(database_url) as conn:
        raw = Table({"category": ["c"] * n, "status": ["ok"] * n, "image_id": ids, "url": ids})
        copy_rows(conn, sql.Identifier("raw_images"), raw, ["text"] * 4)
        table = Table({"image_id": ids, "model": [model] * n, "embedding": vectors})
        copy_rows(conn, identifier(EMBEDDINGS), table, ["text", "text", "vector"])
        ensure_hnsw_indexes(conn, EMBEDDINGS, table, "model", m=8, ef_construction=16)
        conn.commit()
        monkeypatch.setattr(search, "EF_SEARCH_BASE_VECTORS", n // 10)

        def recall(ef_search: int | None) -> float:
            found = [nearest(conn, q, model, k=k, ef_search=ef_search) for q in queries]
            return float(
                np.mean([len({i for i, _ in f} & t) / k for f, t in zip(found, truth, strict=True)])
            )

        vectors_in_graph = indexed_vectors(conn, model, dim)
        assert default_ef_search(k, filtered=False, vectors=vectors_in_graph) == 160
        assert recall(None) == recall(160) >= 0.97
        assert recall(40) < 0.93


def test_a_halfvec_index_is_its_own_and_search_walks_it(store, monkeypatch) -> None:
    """The same vectors indexed as halfvec(d) (half the graph's memory): a second index by
    its own name, walked by `nearest(..., vector_type="halfvec")`, finding the brute-force
    nearest (cosines within half precision)."""
    conn, vectors, ids, _ = store
    embeddings = Table({"model": [MODEL], "embedding": vectors[:1]})
    [name] = ensure_hnsw_indexes(conn, EMBEDDINGS, embeddings, "model", vector_type="halfvec")
    conn.commit()
    assert name == hnsw_index_name("image_embeddings", "embedding", MODEL, DIM, "halfvec")
    assert name != hnsw_index_name("image_embeddings", "embedding", MODEL, DIM)
    assert indexed_vectors(conn, MODEL, DIM, "halfvec") == 80
    conn.execute("SET enable_seqscan = off")
    conn.commit()
    before = _index_scans(conn)
    query = vectors[3] + 0.3 * vectors[70]
    query /= np.linalg.norm(query)
    found = nearest(conn, query, MODEL, k=5, vector_type="halfvec")
    assert _index_scans(conn) == before + 1
    truth = np.argsort(-(vectors @ query))[:5]
    assert {image_id for image_id, _ in found} == {ids[i] for i in truth}
    np.testing.assert_allclose(
        sorted(1 - d for _, d in found), sorted(vectors[truth] @ query), atol=2e-3
    )


def test_an_index_build_gets_the_memory_its_graph_needs() -> None:
    """maintenance_work_mem from the graph's size: a million 768-d vectors need ~4 GB as
    vector, ~2.4 GB as halfvec (the 1 GB of before finished them on disk); small graphs keep
    1 GB and none gets more than the cap."""
    assert index_memory_mb(1_000, 768, "vector", 16) == INDEX_MEMORY_MIN_MB
    assert 3_800 < index_memory_mb(1_000_000, 768, "vector", 16) < 4_200
    assert 2_200 < index_memory_mb(1_000_000, 768, "halfvec", 16) < 2_500
    assert index_memory_mb(10_000_000, 768, "vector", 16) == INDEX_MEMORY_MAX_MB
