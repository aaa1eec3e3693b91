"""Bounded work per request in the search service: floods of keyword queries beside a plain
query, the statement timeout, and 503 with Retry-After past the queue limit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from featuregen_assets.core.search.bounds import MAX_TERMS
from featuregen_assets.core.store import db
from featuregen_assets.serve.app import create_app
from featuregen_tests.app_server import served
from featuregen_tests.search_store import SearchStore, search_store_in_new_database

BULK_ROWS = 60_000
WORDS = ("red", "green", "blue", "circle", "square", "triangle", "large", "small", "star")
FLOOD = " or ".join(WORDS[i % len(WORDS)] + str(i % 200) for i in range(1600))
# Within the term cap, yet matching every bulk prompt: the heaviest query the cap allows.
HEAVY = " or ".join(WORDS[i % len(WORDS)] for i in range(MAX_TERMS))
MEDIUM = "red or circle or star"  # well under the statement timeout, yet not instant


@pytest.fixture(scope="module")
def store(tmp_path_factory, pg_admin_url: str, tiny_models_dir) -> SearchStore:
    """The demo-like store plus `BULK_ROWS` ok images whose prompts all match `HEAVY`."""
    home = tmp_path_factory.mktemp("limits-home")
    store = search_store_in_new_database(pg_admin_url, "limits", home, tiny_models_dir)
    with db.connection(store.url) as conn:
        conn.execute(
            "INSERT INTO raw_images (category, url, status, image_id, path, width, height,"
            " format) SELECT 'bulk', 'http://bulk.test/' || i, 'ok', md5(i::text) || md5(i::text),"
            " '', 64, 64, 'JPEG' FROM generate_series(1, %(n)s) i",
            {"n": BULK_ROWS},
        )
        conn.execute(
            "INSERT INTO image_prompts (image_id, model, source, prompt)"
            " SELECT md5(i::text) || md5(i::text), 'bulk', 'generated',"
            " 'a picture of a ' || (%(words)s::text[])[1 + i %% 9] || ' '"
            " || (%(words)s::text[])[1 + (i / 9) %% 9] || ' and a red green blue circle square'"
            " || ' triangle star, large and small' FROM generate_series(1, %(n)s) i",
            {"n": BULK_ROWS, "words": list(WORDS)},
        )
        conn.execute("ANALYZE")
    return store


@pytest.mark.parametrize(
    ("q", "says"),
    [
        (FLOOD, "the query has 18,495 characters; at most 1,000"),
        (" ".join(["red"] * 40), "the query has 40 words; at most 16"),
    ],
)
def test_a_query_over_the_caps_is_refused_saying_so(store, q, says) -> None:
    with served(create_app(store.config())) as base:
        for mode in ("keyword", "hybrid"):
            response = httpx.get(f"{base}/api/search", params={"q": q, "mode": mode})
            assert response.status_code == 400
            assert response.json()["detail"].startswith(says)


def test_a_plain_query_answers_within_2_s_beside_keyword_floods(store) -> None:
    """Six clients flood keyword and hybrid queries (each 1,600 words, then the heaviest the
    cap allows) while a seventh asks plain text queries: each plain answer within 2 s."""
    stop = threading.Event()
    statuses: list[int] = []

    def flood(base: str, mode: str) -> None:
        ends = time.monotonic() + 120  # however the test goes, the floods end
        with httpx.Client(base_url=base, timeout=60) as client:
            while not stop.is_set() and time.monotonic() < ends:
                for q in (FLOOD, HEAVY):
                    response = client.get("/api/search", params={"q": q, "mode": mode})
                    statuses.append(response.status_code)

    plain_s = []
    with served(create_app(store.config())) as base, ThreadPoolExecutor(6) as floods:
        started = [floods.submit(flood, base, ("keyword", "hybrid")[i % 2]) for i in range(6)]
        try:
            time.sleep(1.0)  # the floods are running
            with httpx.Client(base_url=base, timeout=60) as client:
                for q in ("a red circle", "blue square", "green star", "small triangle") * 3:
                    begin = time.perf_counter()
                    response = client.get("/api/search", params={"q": q, "mode": "image", "k": 10})
                    plain_s.append(time.perf_counter() - begin)
                    assert response.status_code == 200, response.text
        finally:
            stop.set()
        for future in started:
            future.result()
    assert max(plain_s) < 2.0, plain_s
    assert 400 in statuses and set(statuses) <= {200, 400, 503}, set(statuses)


def test_a_statement_past_its_timeout_is_503_and_frees_its_connection(store) -> None:
    config = store.config(statement_timeout_s=0.5, search_threads=1, keyword_threads=1)
    with served(create_app(config)) as base, httpx.Client(base_url=base) as client:
        for _ in range(3):  # more than the pool's connections would allow if they were kept
            slow = client.get("/api/search", params={"q": HEAVY, "mode": "keyword"}, timeout=60)
            assert slow.status_code == 503
            assert "statement timeout" in slow.json()["detail"]
        by_id = client.get("/api/search", params={"like": store.ids[0], "k": 3})
    assert by_id.status_code == 200, by_id.text  # short statements pass the same timeout


def test_past_the_queue_limit_is_503_with_retry_after(store) -> None:
    config = store.config(keyword_threads=1, queue_limit=0)
    with served(create_app(config)) as base, httpx.Client(base_url=base, timeout=60) as client:

        def heavy(_: int) -> httpx.Response:
            return client.get("/api/search", params={"q": MEDIUM, "mode": "keyword", "k": 5})

        with ThreadPoolExecutor(6) as clients:
            responses = list(clients.map(heavy, range(6)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]


def test_the_lanes_are_sized_by_the_cpus_the_server_may_use() -> None:
    """A server confined to one CPU (a container's cpuset, `taskset`) sizes its lanes for one,
    not for every CPU of the host."""
    probe = "from featuregen_assets.serve import backend as b\n"
    probe += "print(b.SEARCH_THREADS, b.KEYWORD_THREADS)"
    one_cpu = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
    )
    assert one_cpu.stdout.split() == ["4", "2"]
