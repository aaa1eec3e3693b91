"""A hybrid query's first-page lists ranked on a second connection, beside the query's own
thread: the keyword lists and, when the image list is read too, the caption lists with their
sentence encoding. The query's thread meanwhile encodes the text for the image list and ranks
the image lists, so a hybrid query costs about the longer of the two paths, not their sum."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import psycopg

from featuregen_assets.core.search.lists import Ranked
from featuregen_assets.core.search.modes import CAPTION, IMAGE, KEYWORD

ListKey = tuple[str, int, str | None]  # (list name, depth, category)
# Ranks one list on the given connection: (conn, name, depth, category) → the list.
RankOne = Callable[[psycopg.Connection, str, int, str | None], Ranked]


def lists_beside(lists: tuple[str, ...]) -> tuple[str, ...]:
    """Which of a query's ``lists`` go beside: none for a single list; the keyword list, and
    the caption list when the image list keeps the query's thread busy."""
    if len(lists) < 2:
        return ()
    return tuple(name for name in lists if name == KEYWORD or (name == CAPTION and IMAGE in lists))


@dataclass(frozen=True)
class ListsBeside:
    """The lists ranked beside: ``names`` at each of ``slots`` ((depth, category)), in a
    future. ``prepare`` (the caption encoding) runs first on the side thread."""

    names: tuple[str, ...]
    slots: tuple[tuple[int, str | None], ...]
    future: Future[dict[ListKey, Ranked]]

    @classmethod
    def start(
        cls,
        executor: Executor,
        conn: psycopg.Connection,
        names: tuple[str, ...],
        slots: tuple[tuple[int, str | None], ...],
        rank_one: RankOne,
        prepare: Callable[[], None],
    ) -> ListsBeside:
        """Rank ``names`` at ``slots`` on ``conn`` in ``executor``: the keyword list first (all
        in PostgreSQL, while the query's thread encodes), then ``prepare`` and the others."""
        ordered = sorted(names, key=lambda name: name != KEYWORD)

        def run() -> dict[ListKey, Ranked]:
            found: dict[ListKey, Ranked] = {}
            for name in ordered:
                if name == CAPTION:
                    prepare()
                for depth, category in slots:
                    found[(name, depth, category)] = rank_one(conn, name, depth, category)
            return found

        return cls(names, slots, executor.submit(run))

    def has(self, name: str, depth: int, category: str | None) -> bool:
        """Whether ``name`` at that depth and category is ranked beside."""
        return name in self.names and (depth, category) in self.slots

    def get(self, name: str, depth: int, category: str | None) -> Ranked:
        """That list, once ranked (raises what ranking it raised)."""
        return self.future.result()[(name, depth, category)]

    def done(self) -> None:
        """Wait until the side work is over (raises what it raised)."""
        self.future.result()
