"""The answer's `total`: how many images a query ranks in its scope (category applied)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Executor, wait
from contextlib import AbstractContextManager, contextmanager

import psycopg

from featuregen_assets.core.search.expiring import Expiring
from featuregen_assets.core.search.modes import CAPTION, IMAGE, KEYWORD
from featuregen_assets.core.store.full_text import keyword_matches

# Totals change only when a run stores more: counting 100k images with a vector costs ~50 ms,
# a keyword query's matches ~20 ms (kept per query: its next pages and a repeat pay nothing).
CACHE_S = 30.0
Count = Callable[[psycopg.Connection], int]  # a query's total, counted on a connection


class TotalCounter:
    """Vector lists rank every image in scope with a vector: their total is the images in
    scope with an image vector (image list) or a searched text vector (caption list); a
    keyword list alone ranks the images whose texts match. Each total is kept `CACHE_S`.
    With ``random_prompts`` the random-weight captioner's texts count as searched."""

    def __init__(self, random_prompts: bool = False) -> None:
        self.random_prompts = random_prompts
        self._cache: Expiring[int] = Expiring(CACHE_S, max_entries=4096)

    def total(
        self,
        conn: psycopg.Connection,
        lists: tuple[str, ...],
        space: str | None,
        sentence_model: str | None,
        category: str | None,
        text: str | None,
    ) -> int:
        """The total of a query reading ``lists``."""
        key = _key(lists, space, sentence_model, category, text)
        if lists == (KEYWORD,):
            return self._cache.get(
                key, lambda: keyword_matches(conn, text or "", category, self.random_prompts)
            )
        return self._cache.get(key, lambda: _with_vectors(conn, *key, self.random_prompts))

    def counter(self, *scope) -> Count:
        """`total` of the query with this scope (its arguments after the connection)."""
        return lambda conn: self.total(conn, *scope)

    @contextmanager
    def beside(
        self,
        executor: Executor,
        spare: Callable[[], AbstractContextManager[psycopg.Connection | None]] | None,
        *scope,
    ) -> Iterator[Count]:
        """`counter` of a query, but a keyword query's total that is not kept is counted at
        once on a spare connection (when one is free), while the query ranks its matches:
        counting them costs about what ranking them does (~20 ms at 100,000). The spare
        connection goes back once the count is done."""
        lists = scope[0]
        if spare is None or lists != (KEYWORD,) or self._cache.peek(_key(*scope)) is not None:
            yield self.counter(*scope)
            return
        with spare() as side:
            if side is None:
                yield self.counter(*scope)
                return
            counting = executor.submit(self.total, side, *scope)
            try:
                yield lambda _conn: counting.result()
            finally:
                wait([counting])


def _key(lists, space, sentence_model, category, text) -> Hashable:
    """What a total is kept under: a keyword query's text, or the vector spaces its lists
    read (a vector list ranks every image in scope with a vector)."""
    if lists == (KEYWORD,):
        return (KEYWORD, text, category)
    return (IMAGE in lists and space, CAPTION in lists and sentence_model, category)


def _with_vectors(conn, space, sentence_model, category, random_prompts: bool) -> int:
    (count,) = conn.execute(
        """
        SELECT count(*) FROM (SELECT DISTINCT image_id FROM raw_images
                              WHERE status = 'ok' AND category = coalesce(%(category)s, category)) r
        WHERE EXISTS (SELECT 1 FROM image_embeddings e
                      WHERE e.image_id = r.image_id AND e.model = %(space)s)
           OR EXISTS (SELECT 1 FROM prompt_embeddings t
                      WHERE t.image_id = r.image_id AND t.model = %(sentence)s
                        AND (%(random)s OR NOT t.random_weights))
        """,
        {
            "space": space or None,
            "sentence": sentence_model or None,
            "category": category,
            "random": random_prompts,
        },
    ).fetchone()
    return count
