"""A hybrid query's first-page lists shared between its own thread and a second connection's:
the keyword lists go beside at once, while the query's own thread encodes the query for the
image list and ranks that (or, without the image list, ranks a filtered page's caption list);
the caption lists (their query encoded on a third thread from the start) go to whichever of
the two is free first. A hybrid query then costs about the longer of two balanced paths, not
the sum of its lists."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from functools import partial

import psycopg

from featuregen_assets.core.search.lists import Ranked
from featuregen_assets.core.search.modes import CAPTION, IMAGE, KEYWORD

ListKey = tuple[str, int, str | None]  # (list name, depth, category)
# Ranks one list on the given connection: (conn, name, depth, category) → the list.
RankOne = Callable[[psycopg.Connection, str, int, str | None], Ranked]


def lists_beside(
    lists: tuple[str, ...], slots: tuple[tuple[int, str | None], ...]
) -> tuple[str, ...]:
    """Which of a query's ``lists``, read at each of ``slots`` ((depth, category)), may go
    beside: none for a single list; the keyword list, and the caption list when the image
    list keeps the query's own thread busy or the query reads it at two slots (a filtered
    first page: its category's page and its facets' unfiltered list, one on each thread)."""
    if len(lists) < 2:
        return ()
    caption = IMAGE in lists or len(slots) > 1
    return tuple(name for name in lists if name == KEYWORD or (name == CAPTION and caption))


class ListsBeside:
    """The lists ``names`` at each of ``slots`` ((depth, category)): each ranked once, by the
    side connection's thread or the query's own, whichever claims it first. ``prepare`` (the
    caption query's encoding) is waited for before a caption list is ranked."""

    def __init__(
        self,
        names: tuple[str, ...],
        slots: tuple[tuple[int, str | None], ...],
        prepare: Callable[[], object],
    ) -> None:
        self.names = names
        self.slots = slots
        self._prepare = prepare
        self._lists: dict[ListKey, Future[Ranked]] = {}  # each claimed list, once ranked
        self._lock = threading.Lock()
        self.future: Future[None] | None = None  # the side's work, done when it is idle

    def start(self, executor: Executor, conn: psycopg.Connection, rank_one: RankOne) -> None:
        """Rank on ``conn`` in ``executor``, the keyword lists first (all in PostgreSQL, while
        the query's thread encodes), then the caption lists no one has claimed yet."""
        ordered = sorted(self.names, key=lambda name: name != KEYWORD)

        def run() -> None:
            for name in ordered:
                for depth, category in self.slots:
                    key = (name, depth, category)
                    if self._claim(key):
                        self._rank(key, partial(rank_one, conn, name, depth, category))

        self.future = executor.submit(run)

    def has(self, name: str, depth: int, category: str | None) -> bool:
        """Whether ``name`` at that depth and category is shared here."""
        return name in self.names and (depth, category) in self.slots

    def take(
        self, name: str, depth: int, category: str | None, rank_here: Callable[[], Ranked]
    ) -> Ranked:
        """That list: ranked by ``rank_here()`` if the side has not claimed it, else the
        side's, once ranked (raises what ranking it raised)."""
        key = (name, depth, category)
        if self._claim(key):
            return self._rank(key, rank_here)
        return self._lists[key].result()

    def prepared(self) -> None:
        """Wait for ``prepare`` (raises what it raised)."""
        self._prepare()

    def _claim(self, key: ListKey) -> bool:
        with self._lock:
            if key in self._lists:
                return False
            self._lists[key] = Future()
            return True

    def _rank(self, key: ListKey, rank: Callable[[], Ranked]) -> Ranked:
        """Rank the claimed ``key`` and hand it (or what it raised) to whoever waits for it."""
        try:
            if key[0] == CAPTION:
                self.prepared()
            ranked = rank()
        except BaseException as error:
            self._lists[key].set_exception(error)
            raise
        self._lists[key].set_result(ranked)
        return ranked
