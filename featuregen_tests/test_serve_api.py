"""The search API (`featuregen serve`'s application) against a real PostgreSQL holding demo-like
data: every mode, the hit schema, facets, cursor paging, files by id, and the bad inputs."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from featuregen_assets.core.search import counts, engine
from featuregen_assets.core.search.options import DEFAULT_WEIGHTS, SearchSettings, parse_weights
from featuregen_assets.core.store import db
from featuregen_assets.core.store.registry import (
    RegisteredModel,
    promote,
    promotion_decision,
    served_model,
)
from featuregen_assets.core.text.sentences import BUNDLED
from featuregen_assets.serve.app import create_app
from featuregen_tests.search_store import (
    SearchStore,
    register_text_encoder,
    search_store_in_new_database,
)

HIT_FIELDS = {
    "image_id",
    "rank",
    "score",
    "cosine",
    "category",
    "prompt",
    "caption",
    "url",
    "image_url",
    "thumb_url",
    "width",
    "height",
    "prompt_source",
    "prompt_random",
    "why",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory, pg_admin_url: str, tiny_models_dir) -> SearchStore:
    home = tmp_path_factory.mktemp("serve-home")
    return search_store_in_new_database(pg_admin_url, "serve", home, tiny_models_dir)


@pytest.fixture(scope="module")
def client(store: SearchStore) -> Iterator[TestClient]:
    app = create_app(store.config(max_upload_bytes=200_000))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def _get(client: TestClient, **params) -> dict:
    response = client.get("/api/search", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _all_pages(client: TestClient, **params) -> list[dict]:
    hits, cursor = [], None
    for _ in range(100):
        answer = _get(client, **params, **({"cursor": cursor} if cursor else {}))
        hits += answer["hits"]
        cursor = answer["next_cursor"]
        if cursor is None:
            return hits
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("mode", ["text", "image", "caption", "keyword", "hybrid"])
def test_every_answer_has_the_hit_schema_facets_timings_and_model(client, store, mode) -> None:
    answer = _get(client, q="large", mode=mode, k=5)
    assert answer["mode"] == {"text": "image"}.get(mode, mode) and len(answer["hits"]) == 5
    assert all(set(hit) == HIT_FIELDS for hit in answer["hits"])
    assert [h["rank"] for h in answer["hits"]] == [1, 2, 3, 4, 5]
    scores = [h["score"] for h in answer["hits"]]
    assert scores == sorted(scores, reverse=True)
    first = answer["hits"][0]
    assert first["image_url"] == f"/images/{first['image_id']}"
    assert first["thumb_url"] == f"/thumbs/{first['image_id']}"
    assert first["category"] == store.categories[first["image_id"]]
    assert first["prompt"].startswith("a picture of") and first["width"] > 0
    # the store's generated prompts come from a tiny (random-weight) captioner
    assert (first["prompt_source"], first["prompt_random"]) == ("generated", True)
    assert answer["next_cursor"]
    assert set(answer["timing_ms"]) == {"encode", "vector", "keyword", "metadata", "total"}
    lists = {"hybrid": {"image", "caption", "keyword"}}.get(answer["mode"], {answer["mode"]})
    assert answer["model"] == {
        "embedding_model": store.embedding_model,
        "text_encoder_version": "v1" if "image" in lists else None,
        "sentence_model": store.sentence_model if "caption" in lists else None,
    }
    for hit in answer["hits"]:
        assert {w["list"] for w in hit["why"]} <= lists and hit["why"]
        if mode != "hybrid":
            assert hit["why"] == [
                {"list": answer["mode"], "rank": hit["rank"], "score": hit["score"]}
            ]
    assert set(answer["facets"]) <= {"cafe", "bank", "shop"} and sum(answer["facets"].values()) > 0
    if mode == "keyword":
        assert answer["score_kind"] == "keyword" and first["cosine"] is None
        assert answer["total"] == len(_all_pages(client, q="large", mode=mode, k=50))
    else:
        assert first["cosine"] is not None and -1 <= first["cosine"] <= 1
        assert answer["total"] == 24  # every stored image has a vector in each vector list
    if mode in ("text", "image", "caption"):
        assert answer["facets"] == {"bank": 8, "cafe": 8, "shop": 8}
        assert scores == [h["cosine"] for h in answer["hits"]]


def test_keyword_search_matches_prompts_and_captions_by_stem(client, store) -> None:
    hits = _all_pages(client, q="triangles", mode="keyword", k=7)
    assert hits
    for hit in hits:
        text = f"{hit['prompt']} {hit['caption']}"
        assert "triangle" in text
    with db.connection(store.url) as conn:
        (matching,) = conn.execute(
            "SELECT count(DISTINCT image_id) FROM image_prompts WHERE prompt LIKE '%triangle%'"
        ).fetchone()
    assert len(hits) == matching


def test_hybrid_ranks_the_prompt_match_above_the_vector_only_match(client, store) -> None:
    query = "quokka lantern"
    by_vector = [h["image_id"] for h in _get(client, q=query, mode="image", k=24)["hits"]]
    vector_top, prompt_match = by_vector[0], by_vector[10]
    with db.connection(store.url) as conn:
        conn.execute(
            "UPDATE image_prompts SET prompt = prompt || ' beside a quokka lantern'"
            " WHERE image_id = %s AND source = 'link_caption'",
            (prompt_match,),
        )
    try:
        hybrid = [h["image_id"] for h in _get(client, q=query, mode="hybrid", k=24)["hits"]]
        keyword = [h["image_id"] for h in _get(client, q=query, mode="keyword")["hits"]]
    finally:
        with db.connection(store.url) as conn:
            conn.execute(
                "UPDATE image_prompts SET prompt = replace(prompt, ' beside a quokka lantern', '')"
                " WHERE image_id = %s",
                (prompt_match,),
            )
    assert keyword == [prompt_match]
    assert hybrid.index(prompt_match) < hybrid.index(vector_top)
    assert hybrid[0] == prompt_match


def _record_connections(monkeypatch, delay: dict[str, float]) -> dict[str, list]:
    """Which connection ranks each list, in call order; each list waits ``delay[list]`` s
    (read at the call) before it is ranked."""
    connections: dict[str, list] = {"keyword": [], "caption": [], "image": []}

    def recorded(name, rank):
        def record(conn, *args, **kwargs):
            connections[name].append(conn)
            time.sleep(delay.get(name, 0.0))
            return rank(conn, *args, **kwargs)

        return record

    monkeypatch.setattr(engine, "_keyword", recorded("keyword", engine._keyword))
    lists = engine.ranked_lists
    for name, attribute in (("caption", "by_caption_vectors"), ("image", "by_image_vectors")):
        monkeypatch.setattr(lists, attribute, recorded(name, getattr(lists, attribute)))
    return connections


def _alone_beside_and_none_free(store, searchers, query, delay: dict[str, float], slow: dict):
    """``query`` answered by one searcher each: alone, with a spare connection (the lists
    delayed as ``slow`` says) and with none free; and the spare connections made."""
    sides = []

    @contextmanager
    def spare():
        with db.connection(store.url) as side:
            sides.append(side)
            yield side

    with db.connection(store.url) as conn:
        alone = searchers[0].search(conn, query)
        delay.update(slow)
        beside = searchers[1].search(conn, query, spare)
        delay.clear()
        none_free = searchers[2].search(conn, query, lambda: nullcontext(None))
    return conn, sides, (alone, beside, none_free)


def _ranked(answer) -> list[tuple[str, float]]:
    return [(hit.image_id, hit.score) for hit in answer.hits]


@pytest.mark.parametrize("slow", ["keyword", "image"])
@pytest.mark.parametrize("category", [None, "bank"])
def test_a_hybrid_query_shares_its_lists_with_a_spare_connection(
    store, monkeypatch, category, slow
) -> None:
    """The keyword lists go to the spare connection, the image lists stay on the query's, and
    each caption list is ranked once, by whichever of the two is free first."""
    delay: dict[str, float] = {}
    connections = _record_connections(monkeypatch, delay)
    # A searcher each: one keeps a query's facets for its category pages (tested apart).
    searchers = [engine.Searcher(sentence_encoder=BUNDLED) for _ in range(3)]
    query = engine.SearchQuery(text="red circle", mode="hybrid", category=category, k=5)
    conn, sides, answers = _alone_beside_and_none_free(store, searchers, query, delay, {slow: 1.0})
    alone, beside, none_free = answers
    assert alone.model["sentence_model"] == store.sentence_model  # all three lists fused
    assert _ranked(beside) == _ranked(alone) == _ranked(none_free)
    assert _ranked(alone) and beside.facets == alone.facets
    per_query = 1 if category is None else 2  # the facets' list, and a filtered page's own
    assert len(sides) == 1 and all(len(made) == 3 * per_query for made in connections.values())
    beside_part = slice(per_query, 2 * per_query)
    assert connections["keyword"][beside_part] == sides * per_query
    assert connections["image"][beside_part] == [conn] * per_query
    free_first = conn if slow == "keyword" else sides[0]
    assert connections["caption"][beside_part] == [free_first] * per_query


@pytest.mark.parametrize("category", [None, "bank"])
def test_a_filtered_hybrid_page_ranks_its_two_caption_lists_on_two_connections(
    store, monkeypatch, category
) -> None:
    """Without the image list (weight 0), a filtered first page's caption lists (the
    category's page and the facets' unfiltered list) go one to each connection; an
    unfiltered page's one caption list stays on the query's. The hits are the same."""
    delay: dict[str, float] = {}
    connections = _record_connections(monkeypatch, delay)
    settings = SearchSettings(hybrid_weights=("image=0", "caption=0.5", "keyword=1"))
    searchers = [engine.Searcher(sentence_encoder=BUNDLED, settings=settings) for _ in range(3)]
    query = engine.SearchQuery(text="red circle", mode="hybrid", category=category, k=5)
    # The side ranks the keyword lists first (0.2 s each), then a caption list no one has
    # claimed; the query's thread claims the category's at once and holds it 1 s.
    conn, sides, answers = _alone_beside_and_none_free(
        store, searchers, query, delay, {"keyword": 0.2, "caption": 1.0}
    )
    alone, beside, none_free = answers
    assert alone.model["sentence_model"] == store.sentence_model
    assert alone.model["text_encoder_version"] is None  # the image list is not read
    assert _ranked(beside) == _ranked(alone) == _ranked(none_free)
    assert _ranked(alone) and beside.facets == alone.facets == none_free.facets
    per_query = 1 if category is None else 2
    assert connections["image"] == [] and len(sides) == 1
    assert len(connections["keyword"]) == len(connections["caption"]) == 3 * per_query
    beside_part = slice(per_query, 2 * per_query)
    assert connections["keyword"][beside_part] == sides * per_query
    assert connections["caption"][beside_part] == [conn, *sides][:per_query]


@pytest.mark.parametrize("category", [None, "cafe"])
def test_a_keyword_query_counts_its_matches_on_a_spare_connection(
    store, monkeypatch, category
) -> None:
    """A keyword query's total is counted on the spare connection while its own ranks the
    matches, with the same answer; once the total is kept, no spare is taken."""
    counted = []
    matches = counts.keyword_matches
    monkeypatch.setattr(
        counts, "keyword_matches", lambda conn, *a: counted.append(conn) or matches(conn, *a)
    )
    searchers = [engine.Searcher(sentence_encoder=BUNDLED) for _ in range(3)]
    query = engine.SearchQuery(text="red circle", mode="keyword", category=category, k=5)
    conn, sides, answers = _alone_beside_and_none_free(store, searchers, query, {}, {})
    alone, beside, none_free = answers
    assert _ranked(beside) == _ranked(alone) == _ranked(none_free) != []
    assert beside.total == alone.total == none_free.total > 0
    assert counted == [conn, *sides, conn] and len(sides) == 1
    taken = []

    @contextmanager
    def spare():
        taken.append(True)
        yield None

    with db.connection(store.url) as again:
        assert searchers[1].search(again, query, spare).total == alone.total
    assert taken == [] and len(counted) == 3


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "image"])
def test_a_category_page_after_the_same_query_keeps_its_facets(store, monkeypatch, mode) -> None:
    """A category chip clicked after a search: the page ranks only the category's lists, and
    its facets are the unfiltered query's, as a cold filtered query computes them."""
    query = engine.SearchQuery(text="red circle", mode=mode, k=5)
    in_bank = engine.SearchQuery(text="red circle", mode=mode, k=5, category="bank")
    with db.connection(store.url) as conn:
        cold = engine.Searcher(sentence_encoder=BUNDLED).search(conn, in_bank)
        searcher = engine.Searcher(sentence_encoder=BUNDLED)
        unfiltered = searcher.search(conn, query)
        scopes = []
        lists = engine.ranked_lists
        for name, at in (("by_caption_vectors", 3), ("by_image_vectors", 3), ("by_keywords", 2)):
            ranked = getattr(lists, name)  # `at`: where the category is among its arguments

            def recorded(conn, *args, _ranked=ranked, _at=at, **kw):
                scopes.append(args[_at])
                return _ranked(conn, *args, **kw)

            monkeypatch.setattr(lists, name, recorded)
        shared = lists.keyword_ranked_scopes
        monkeypatch.setattr(
            lists,
            "keyword_ranked_scopes",
            lambda conn, text, wanted, *a: (
                scopes.extend(c for _, c in wanted) or shared(conn, text, wanted, *a)
            ),
        )
        warm = searcher.search(conn, in_bank)
    assert warm.facets == cold.facets == unfiltered.facets
    assert [h.image_id for h in warm.hits] == [h.image_id for h in cold.hits]
    assert scopes and set(scopes) == {"bank"}  # no unfiltered list ranked again


def test_fusion_constant_is_a_parameter(client) -> None:
    flat = _get(client, q="red circle", mode="hybrid", rrf_k=1000, k=3)["hits"]
    steep = _get(client, q="red circle", mode="hybrid", rrf_k=0, k=3)["hits"]
    weights = parse_weights(DEFAULT_WEIGHTS)
    assert steep[0]["score"] >= max(weights.values())  # weight / (0 + 1) from one list's first
    assert flat[0]["score"] <= sum(weights.values()) / 1001  # first in all three lists at most


@pytest.mark.parametrize(
    "params",
    [
        {"q": "circle"},
        {"q": "circle", "mode": "keyword"},
        {"q": "circle", "mode": "hybrid"},
        {"q": "circle", "category": "cafe"},
        {"q": "circle square", "mode": "hybrid", "category": "bank"},
    ],
)
def test_cursor_paging_returns_each_hit_exactly_once(client, params) -> None:
    whole = _get(client, **params, k=1000)["hits"]
    paged = _all_pages(client, **params, k=5)
    assert [h["image_id"] for h in paged] == [h["image_id"] for h in whole]
    assert [h["rank"] for h in paged] == list(range(1, len(whole) + 1))


def test_paging_stops_at_the_result_cap(client, monkeypatch) -> None:
    monkeypatch.setattr(engine, "MAX_RESULTS", 12)
    paged = _all_pages(client, q="circle", k=5)
    assert len(paged) == 12 and len({h["image_id"] for h in paged}) == 12


def test_like_an_image_and_by_raw_vector(client, store) -> None:
    chosen = store.ids[7]
    like = _get(client, like=chosen, k=3)
    assert like["mode"] == "like" and like["hits"][0]["image_id"] == chosen
    assert like["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    response = client.post(
        "/api/search/vector", json={"vector": store.vectors[chosen].tolist(), "k": 3}
    )
    assert response.status_code == 200
    assert [h["image_id"] for h in response.json()["hits"]] == [h["image_id"] for h in like["hits"]]
    wrong = client.post("/api/search/vector", json={"vector": [1.0, 2.0]})
    assert wrong.status_code == 400 and f"{store.dim} numbers" in wrong.json()["detail"]
    zeros = client.post("/api/search/vector", json={"vector": [0.0] * store.dim})
    assert zeros.status_code == 400
    assert client.get("/api/search", params={"like": "f" * 64}).status_code == 404


def test_an_uploaded_image_finds_itself_first(client, store) -> None:
    chosen = store.ids[17]
    response = client.post(
        "/api/search/image",
        files={"file": ("photo", store.files[chosen], "application/octet-stream")},
        data={"k": "4", "category": store.categories[chosen]},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["mode"] == "image" and answer["hits"][0]["image_id"] == chosen
    assert answer["hits"][0]["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert {h["category"] for h in answer["hits"]} == {store.categories[chosen]}
    assert answer["timing_ms"]["encode"] > 0


def test_uploads_that_are_not_images_or_too_large_are_refused(client) -> None:
    not_image = {"file": ("a.jpg", b"not an image", "image/jpeg")}
    text = client.post("/api/search/image", files=not_image)
    assert text.status_code == 415 and "not an image" in text.json()["detail"]
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), np.uint8)).save(
        big, "PNG"
    )
    assert len(big.getvalue()) > 200_000
    large = client.post("/api/search/image", files={"file": ("big.png", big.getvalue())})
    assert large.status_code == 413 and "limit" in large.json()["detail"]
    missing = client.post("/api/search/image", data={"k": "3"})
    assert missing.status_code == 400 and "file" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"q": "   "}, "empty"),
        ({"q": "circle", "k": 0}, "greater than or equal to 1"),
        ({"q": "circle", "k": 1001}, "less than or equal to 1000"),
        ({"q": "circle", "k": "ten"}, "integer"),
        ({"q": "circle", "mode": "fuzzy"}, "caption, image, keyword, hybrid, text"),
        ({"q": "circle", "mode": "image", "version": "v9"}, "no text encoder version 'v9'"),
        ({"q": "circle", "mode": "keyword", "version": "v9"}, "no text encoder version 'v9'"),
        ({"q": "circle", "mode": "caption", "version": "v9"}, "no text encoder version 'v9'"),
        ({"q": "circle", "cursor": "not-a-cursor"}, "not one this service made"),
        ({"q": "the a an", "mode": "keyword"}, "skips common words"),
        ({"q": "!!! ?", "mode": "keyword", "category": "bank"}, "skips common words"),
        ({}, "give q="),
    ],
)
def test_bad_parameters_get_400_saying_what_is_allowed(client, params, says) -> None:
    response = client.get("/api/search", params=params)
    assert response.status_code == 400
    assert says in response.json()["detail"]


def test_only_a_keyword_query_with_no_search_terms_is_refused(client) -> None:
    """A keyword query with words that match nothing answers with no hits; one with no
    words but common ones is refused (above); in hybrid mode its caption list answers."""
    assert _get(client, q="zebra", mode="keyword")["total"] == 0
    assert _get(client, q="the a an", mode="hybrid")["hits"]


def test_a_cursor_of_another_query_is_refused(client) -> None:
    cursor = _get(client, q="circle", k=2)["next_cursor"]
    response = client.get("/api/search", params={"q": "square", "k": 2, "cursor": cursor})
    assert response.status_code == 400 and "another query" in response.json()["detail"]


def test_an_unknown_category_gives_no_hits_but_the_facets(client) -> None:
    answer = _get(client, q="circle", category="nowhere")
    assert answer["hits"] == [] and answer["next_cursor"] is None
    assert answer["facets"] == {"bank": 8, "cafe": 8, "shop": 8}


def test_query_text_is_a_bound_parameter(client, store) -> None:
    hostile = "'); DROP TABLE raw_images; --"
    for mode in ("keyword", "hybrid"):
        assert _get(client, q=hostile, mode=mode)["hits"] is not None
    with db.connection(store.url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM raw_images").fetchone()
    assert count == len(store.ids)


def test_images_and_thumbnails_are_served_by_id_with_cache_headers(client, store) -> None:
    chosen = store.ids[3]
    original = client.get(f"/images/{chosen}")
    assert original.status_code == 200 and original.content == store.files[chosen]
    assert "immutable" in original.headers["cache-control"]
    thumb = client.get(f"/thumbs/{chosen}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 256
    cached = store.home / "thumbs" / chosen[:2] / f"{chosen}.jpg"
    made = cached.stat().st_mtime_ns
    assert client.get(f"/thumbs/{chosen}").content == thumb.content
    assert cached.stat().st_mtime_ns == made  # made once


@pytest.mark.parametrize(
    "path",
    [
        "/images/..%2F..%2F..%2Fetc%2Fpasswd",
        "/images/../../etc/passwd",
        "/images/%2e%2e/%2e%2e/etc/passwd",
        "/thumbs/..%2Fimages",
        "/images/" + "0" * 64,  # well-formed, not stored
        "/images/{id}.png",
        "/images/{ID}",
        "/thumbs/{id}%00",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
    ],
)
def test_nothing_outside_the_store_is_served(client, store, path) -> None:
    chosen = store.ids[0]
    response = client.get(path.format(id=chosen, ID=chosen.upper()))
    assert response.status_code == 404
    assert b"root:" not in response.content and b"create_app" not in response.content


def test_no_encoder_registered_is_503_with_what_to_run(database_url, tmp_path) -> None:
    from featuregen_assets.serve.app import ServeConfig

    config = ServeConfig(
        database_url, tmp_path / "images", tmp_path / "thumbs", encoder_threads=None
    )
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        response = client.get("/api/search", params={"q": "a red circle", "mode": "image"})
        detail = response.json()["detail"]
        assert response.status_code == 503 and "featuregen train text-encoder" in detail
        caption = client.get("/api/search", params={"q": "a red circle", "mode": "caption"})
        assert caption.status_code == 503 and "not configured" in caption.json()["detail"]
        for mode in ("keyword", "hybrid"):  # hybrid fuses the lists there are: keyword here
            answer = client.get("/api/search", params={"q": "a red circle", "mode": mode})
            assert answer.status_code == 200 and answer.json()["hits"] == []
        png = io.BytesIO()
        Image.new("RGB", (8, 8)).save(png, "PNG")
        image = client.post("/api/search/image", files={"file": ("a.png", png.getvalue())})
        assert image.status_code == 503  # an image, and no embedder to read it
        junk = client.post("/api/search/image", files={"file": ("a.png", b"x")})
        assert junk.status_code == 415  # no image: refused before any model is looked for


def test_a_new_text_encoder_is_served_once_promoted_not_when_registered(client, store) -> None:
    with db.connection(store.url) as conn:
        promote(conn, "aligned_text_encoder", "v1")
    before = _get(client, q="a small green star", mode="image", k=24)
    register_text_encoder(store, "v2", seed=2)
    try:
        registered = _get(client, q="a small green star", mode="image", k=24)
        with db.connection(store.url) as conn:
            promote(conn, "aligned_text_encoder", "v2")
        promoted = _get(client, q="a small green star", mode="image", k=24)
    finally:
        with db.connection(store.url) as conn:
            conn.execute("DELETE FROM models WHERE version = 'v2'")
            conn.execute("UPDATE models SET promoted_at = NULL")
    assert before["model"]["text_encoder_version"] == "v1"
    assert registered["model"]["text_encoder_version"] == "v1"
    assert registered["hits"] == before["hits"]
    assert promoted["model"]["text_encoder_version"] == "v2"
    assert [h["score"] for h in promoted["hits"]] != [h["score"] for h in before["hits"]]
    assert _get(client, q="a small green star", mode="image", k=24)["hits"] == before["hits"]


def test_training_promotes_a_new_version_only_when_its_validation_figure_is_better() -> None:
    def version(name: str, recall: float, model: str = "m") -> RegisteredModel:
        metrics = {"validation_recall@5": recall}
        return RegisteredModel("aligned_text_encoder", name, Path(name), model, {}, metrics)

    metric = "validation_recall@5"
    assert promotion_decision(version("a", 0.1), None, metric)[0]
    better, why = promotion_decision(version("b", 0.3), version("a", 0.2), metric)
    assert better and "0.3000 against the served a's 0.2000" in why
    worse, why = promotion_decision(version("b", 0.1), version("a", 0.2), metric)
    assert not worse and "featuregen models promote b" in why
    assert not promotion_decision(version("b", 0.9, "other"), version("a", 0.2), metric)[0]


def test_the_page_and_the_openapi_schema_are_served(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<input id="q"' in page.text
    assert client.get("/static/app.js").status_code == 200
    schema_paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/search/image", "/api/search/vector"} <= set(schema_paths)


def test_the_int8_text_encoder_ranks_as_float32_does(store) -> None:
    queries = ["a small green star", "red circle at the top left", "a large blue square"]
    with db.connection(store.url) as conn:
        record = served_model(conn, engine.TEXT_ENCODER)
        fp32 = engine.Searcher().text_encoder(record)
        int8 = engine.Searcher(int8_text_encoder=True).text_encoder(record)
        assert int8 is not fp32
        cosines = (fp32.encode(queries) * int8.encode(queries)).sum(axis=1)
        assert cosines.min() > 0.99
        for text in queries:
            query = engine.SearchQuery(text=text, mode="image", k=5)
            hits = [
                [
                    hit.image_id
                    for hit in engine.Searcher(int8_text_encoder=q).search(conn, query).hits
                ]
                for q in (False, True)
            ]
            assert len(set(hits[0]) & set(hits[1])) >= 4


def test_caption_search_finds_an_image_by_its_caption_in_other_words(client, store) -> None:
    with db.connection(store.url) as conn:
        image_id, caption = conn.execute(
            "SELECT image_id, caption FROM raw_images ORDER BY image_id LIMIT 1"
        ).fetchone()
    exact = _get(client, q=caption, mode="caption", k=3)["hits"]
    assert exact[0]["image_id"] == image_id and exact[0]["score"] > 0.95  # int8 query encoder
    assert exact[0]["caption"] == caption
    words = caption.split(",")[0].replace("red", "crimson").replace("blue", "azure")
    reworded = _get(client, q=words, mode="caption", k=5)["hits"]
    assert image_id in [h["image_id"] for h in reworded]


def test_the_random_captioners_prompts_are_searched_only_when_asked(store) -> None:
    with db.connection(store.url) as conn:
        (prompt,) = conn.execute(
            "SELECT prompt FROM image_prompts WHERE source = 'generated' ORDER BY image_id LIMIT 1"
        ).fetchone()
        query = engine.SearchQuery(text=prompt, mode="caption", k=1)
        answers = [
            engine.Searcher(
                sentence_encoder=store.config().sentence_encoder,
                settings=SearchSettings(random_prompts=random),
            ).search(conn, query)
            for random in (False, True)
        ]
    left_out, searched = (answer.hits[0].score for answer in answers)
    assert searched == pytest.approx(1, abs=1e-3)  # the prompt itself
    assert left_out < 0.99


def test_hybrid_says_why_each_hit_came_and_weighs_its_lists(client, store) -> None:
    answer = _get(client, q="a large red circle", mode="hybrid", k=24)
    lists = {"image", "caption", "keyword"}
    for hit in answer["hits"]:
        why = {w["list"]: w for w in hit["why"]}
        assert set(why) <= lists and why
        weights = parse_weights(DEFAULT_WEIGHTS)
        assert hit["score"] == pytest.approx(
            sum(weights[name] / (60 + w["rank"]) for name, w in why.items())
        )
    assert {w["list"] for hit in answer["hits"] for w in hit["why"]} == lists
    only_captions = create_app(
        store.config(search=SearchSettings(hybrid_weights=("image=0", "caption=1", "keyword=0")))
    )
    with TestClient(only_captions, base_url="http://127.0.0.1") as weighted:
        fused = _get(weighted, q="a large red circle", mode="hybrid", k=5)["hits"]
    caption = _get(client, q="a large red circle", mode="caption", k=5)["hits"]
    assert [h["image_id"] for h in fused] == [h["image_id"] for h in caption]
    assert all([w["list"] for w in hit["why"]] == ["caption"] for hit in fused)  # 0: not read


def test_info_names_the_modes_default_examples_categories_and_models(client, store) -> None:
    info = client.get("/api/info").json()
    assert [m["name"] for m in info["modes"]] == ["caption", "image", "keyword", "hybrid"]
    assert all(m["label"] and m["searches"] for m in info["modes"])
    assert (
        info["default_mode"] == "hybrid" and "no stored research report" in info["default_reason"]
    )
    assert info["hybrid_weights"] == parse_weights(DEFAULT_WEIGHTS)
    assert info["hybrid_weights_reason"] == "the built-in weights"
    assert info["categories"] == {"bank": 8, "cafe": 8, "shop": 8}
    assert info["total_images"] == 24
    assert info["models"] == {
        "embedding_model": store.embedding_model,
        "text_encoder_version": "v1",
        "sentence_model": store.sentence_model,
    }
    with db.connection(store.url) as conn:
        captions = " ".join(c for (c,) in conn.execute("SELECT caption FROM raw_images"))
    assert info["examples"] and all(example in captions for example in info["examples"])
    assert not any(e.split()[0] in {"at", "in", "on", "near"} for e in info["examples"])  # a place
    for example in info["examples"][:2]:
        assert _get(client, q=example, mode=info["default_mode"], k=5)["hits"]


def test_a_version_parameter_picks_a_registered_text_encoder(client, store) -> None:
    register_text_encoder(store, "v2", seed=2)
    try:
        v1 = _get(client, q="a small green star", mode="image", version="v1", k=5)
        v2 = _get(client, q="a small green star", mode="image", version="v2", k=5)
    finally:
        with db.connection(store.url) as conn:
            conn.execute("DELETE FROM models WHERE version = 'v2'")
    assert (v1["model"]["text_encoder_version"], v2["model"]["text_encoder_version"]) == (
        "v1",
        "v2",
    )
    assert [h["score"] for h in v1["hits"]] != [h["score"] for h in v2["hits"]]
