"""The ranked lists a text query reads (image vectors, caption vectors, keywords) and their
fusion. Each list is `Ranked`: (image id, score, ascending sort key), best first."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg

from featuregen_assets.core.search.fusion import reciprocal_rank_fusion
from featuregen_assets.core.store.full_text import keyword_ranked, keyword_ranked_scopes
from featuregen_assets.core.store.nearest import nearest, nearest_images_by_text

Ranked = list[tuple[str, float, float]]  # (image id, score, ascending sort key)
After = tuple[float, str] | None  # a keyset cursor's (sort key, image id)


@dataclass(frozen=True)
class Why:
    """One list's say in a hit: its rank there (1-based) and its score there."""

    list: str
    rank: int
    score: float


def by_image_vectors(
    conn: psycopg.Connection, vector, space: str, limit: int, category, after: After
) -> Ranked:
    """Images by cosine of their `space` vector to ``vector`` (an image-space query)."""
    found = nearest(conn, vector, space, k=limit, category=category, after=after)
    return [(image_id, 1.0 - distance, distance) for image_id, distance in found]


def by_keywords(
    conn: psycopg.Connection,
    text: str,
    limit: int,
    category,
    after: After,
    random_prompts: bool = False,
) -> Ranked:
    """Images whose captions or prompts match ``text`` (full text), best rank first."""
    found = keyword_ranked(
        conn, text, limit=limit, category=category, after=after, random_prompts=random_prompts
    )
    return [(image_id, score, -score) for image_id, score in found]


class KeywordPages:
    """A filtered query's first-page keyword lists, ``scopes`` ((limit, category): its
    facets' unfiltered list and its category's page), ranked in one pass over the matches
    when the first of them is asked for; shared between a query's threads."""

    def __init__(
        self, text: str, scopes: Sequence[tuple[int, str | None]], random_prompts: bool = False
    ) -> None:
        self.text = text
        self.scopes = tuple(scopes)
        self.random_prompts = random_prompts
        self._lists: dict[tuple[int, str | None], Ranked] | None = None
        self._lock = threading.Lock()

    def get(self, conn: psycopg.Connection, limit: int, category: str | None) -> Ranked | None:
        """The list of that scope (None: not one of ``scopes``)."""
        if (limit, category) not in self.scopes:
            return None
        with self._lock:
            if self._lists is None:
                found = keyword_ranked_scopes(conn, self.text, self.scopes, self.random_prompts)
                self._lists = {
                    scope: [(image_id, score, -score) for image_id, score in ranked]
                    for scope, ranked in found.items()
                }
            return self._lists[(limit, category)]


def by_caption_vectors(
    conn: psycopg.Connection,
    vector: np.ndarray,
    sentence_model: str,
    limit: int,
    category,
    after: After,
    position: int = 0,
    random_prompts: bool = False,
) -> Ranked:
    """Images by the cosine of their nearest text's sentence vector to ``vector``; ``after``
    keeps what ranks after a cursor at ``position`` (the list is ranked that deep first)."""
    found = nearest_images_by_text(
        conn,
        vector,
        sentence_model,
        k=position + limit,
        category=category,
        random_prompts=random_prompts,
    )
    ranked = [(image_id, 1.0 - distance, distance) for image_id, distance in found]
    return _after(ranked, after)[:limit]


def fuse(
    lists: Mapping[str, Ranked],
    weights: Mapping[str, float],
    constant: float,
    limit: int,
    after: After,
) -> tuple[Ranked, dict[str, list[Why]]]:
    """Weighted reciprocal-rank fusion of the named ``lists`` (each adds weight / (constant +
    rank)); the fused page after ``after`` and, per image, each list's rank and score."""
    names = list(lists)
    fused = reciprocal_rank_fusion(
        [[image_id for image_id, _, _ in lists[name]] for name in names],
        constant,
        [weights.get(name, 1.0) for name in names],
    )
    why: dict[str, list[Why]] = {}
    for name in names:
        for rank, (image_id, score, _) in enumerate(lists[name], start=1):
            why.setdefault(image_id, []).append(Why(name, rank, score))
    ranked = _after([(image_id, score, -score) for image_id, score in fused], after)[:limit]
    return ranked, {image_id: why[image_id] for image_id, _, _ in ranked}


def single(name: str, ranked: Ranked, first_rank: int) -> dict[str, list[Why]]:
    """A one-list answer's say per hit: that list's rank and score."""
    return {
        image_id: [Why(name, first_rank + i, score)]
        for i, (image_id, score, _) in enumerate(ranked)
    }


def _after(ranked: Ranked, after: After) -> Ranked:
    if after is None:
        return ranked
    return [item for item in ranked if (item[2], item[0]) > after]
