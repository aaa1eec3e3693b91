"""The one hit schema of every search answer, and the metadata query that fills it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import psycopg


@dataclass(frozen=True)
class Hit:
    """One image found. ``score`` ranks the hits of an answer (its kind is the answer's
    ``score_kind``); ``cosine`` is the cosine similarity (−1…1) of the image's vector to the
    query vector, None for a keyword query (which has no vector)."""

    image_id: str
    rank: int
    score: float
    cosine: float | None
    category: str
    prompt: str | None
    caption: str | None
    url: str
    image_url: str
    thumb_url: str
    width: int | None
    height: int | None

    def as_dict(self) -> dict:
        """The hit as a JSON-ready dict."""
        return asdict(self)


def image_url(image_id: str) -> str:
    """Where the API serves the stored image file."""
    return f"/images/{image_id}"


def thumb_url(image_id: str) -> str:
    """Where the API serves the image's thumbnail."""
    return f"/thumbs/{image_id}"


def load_hits(
    conn: psycopg.Connection,
    ranked: Sequence[tuple[str, float]],
    *,
    first_rank: int = 1,
    category: str | None = None,
    query: np.ndarray | None = None,
    embedding_model: str | None = None,
) -> list[Hit]:
    """Hits for ranked (image id, score) pairs, in their order: the image's link (in
    ``category`` when it has one there), newest generated prompt, link caption, size, and its
    cosine to ``query`` among ``embedding_model``'s vectors."""
    if not ranked:
        return []
    ids = [image_id for image_id, _ in ranked]
    rows = conn.execute(
        """
        SELECT h.image_id, r.category, r.url, r.caption, r.width, r.height,
               (SELECT p.prompt FROM image_prompts p
                WHERE p.image_id = h.image_id AND p.source = 'generated'
                ORDER BY p.created_at DESC LIMIT 1),
               (SELECT 1 - (e.embedding <=> %(query)s) FROM image_embeddings e
                WHERE %(query)s::vector IS NOT NULL
                  AND e.image_id = h.image_id AND e.model = %(model)s)
        FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS h(image_id, position)
        CROSS JOIN LATERAL (
            SELECT category, url, caption, width, height FROM raw_images r
            WHERE r.image_id = h.image_id AND r.status = 'ok'
            ORDER BY (r.category = %(category)s) DESC NULLS LAST, r.category, r.url
            LIMIT 1
        ) r
        ORDER BY h.position
        """,
        {
            "ids": ids,
            "category": category,
            "query": None if query is None else np.asarray(query, dtype=np.float32),
            "model": embedding_model,
        },
    ).fetchall()
    scores = dict(ranked)
    return [
        Hit(
            image_id=image_id,
            rank=first_rank + position,
            score=scores[image_id],
            cosine=None if cosine is None else float(cosine),
            category=row_category,
            prompt=prompt,
            caption=caption,
            url=url,
            image_url=image_url(image_id),
            thumb_url=thumb_url(image_id),
            width=width,
            height=height,
        )
        for position, (
            image_id,
            row_category,
            url,
            caption,
            width,
            height,
            prompt,
            cosine,
        ) in enumerate(rows)
    ]


def category_counts(conn: psycopg.Connection, ids: Sequence[str]) -> dict[str, int]:
    """How many of ``ids`` each category holds (an image linked from two counts in both),
    most first."""
    rows = conn.execute(
        "SELECT category, count(DISTINCT image_id) FROM raw_images"
        " WHERE image_id = ANY(%s) AND status = 'ok' GROUP BY category ORDER BY 2 DESC, 1",
        (list(ids),),
    ).fetchall()
    return dict(rows)


def known_categories(conn: psycopg.Connection) -> list[str]:
    """Every category with a stored image, sorted."""
    rows = conn.execute(
        "SELECT DISTINCT category FROM raw_images WHERE status = 'ok' ORDER BY 1"
    ).fetchall()
    return [c for (c,) in rows]
