"""nearest() against a brute-force ranking, through the index walk and the exact path."""

from __future__ import annotations

import numpy as np
import pytest

from featuregen_assets.core.search.hits import load_hits
from featuregen_assets.core.store import db, search
from featuregen_assets.core.store.search import nearest
from featuregen_assets.core.store.table import Table
from featuregen_assets.core.store.table_writes import TableName, ensure_hnsw_indexes

MODEL = "test/dinov2@00000000"
DIM = 16


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
        ensure_hnsw_indexes(conn, TableName("public", "image_embeddings"), embeddings, "model")
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
