"""The one hit schema of every search answer, and the metadata query that fills it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import psycopg

from featuregen_assets.core.search.lists import Why
from featuregen_assets.core.vision.model_profiles import TINY_ID_PREFIX, random_weights

PROMPT_SOURCES = {"generated": "generated", "link_caption": "link"}


@dataclass(frozen=True)
class Hit:
    """One image found. ``score`` ranks the hits of an answer (its kind is the answer's
    ``score_kind``); ``cosine`` is the cosine similarity (−1…1) of the image's vector to the
    query vector, None for a keyword query (which has no vector); a caption query's is its
    nearest text's. ``prompt``: the generated prompt (one from real weights first), else a link
    caption; ``prompt_source`` says which ("generated" | "link"), ``prompt_random`` that the
    captioner had random weights (the tiny profile: its prompt is noise). ``why``: each list
    that ranked the hit, with its rank and score there."""

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
    prompt_source: str | None = None
    prompt_random: bool = False
    why: list[Why] = field(default_factory=list)

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
    why: Mapping[str, list[Why]] | None = None,
    cosine_is_score: bool = False,
) -> list[Hit]:
    """Hits for ranked (image id, score) pairs, in their order: the image's link (in
    ``category`` when it has one there), its prompt (see `Hit`), link caption, size, its
    cosine to ``query`` among ``embedding_model``'s vectors (the score itself with
    ``cosine_is_score``) and ``why`` it came."""
    if not ranked:
        return []
    ids = [image_id for image_id, _ in ranked]
    rows = conn.execute(
        """
        SELECT h.image_id, r.category, r.url, r.caption, r.width, r.height,
               p.prompt, p.source, p.model,
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
        LEFT JOIN LATERAL (
            SELECT p.prompt, p.source, p.model FROM image_prompts p
            WHERE p.image_id = h.image_id AND btrim(p.prompt) <> ''
            ORDER BY p.source = 'generated' DESC, p.model LIKE %(tiny)s, p.created_at DESC
            LIMIT 1
        ) p ON true
        ORDER BY h.position
        """,
        {
            "ids": ids,
            "category": category,
            "query": None if query is None else np.asarray(query, dtype=np.float32),
            "model": embedding_model,
            "tiny": TINY_ID_PREFIX + "%",
        },
    ).fetchall()
    scores = dict(ranked)
    return [
        Hit(
            image_id=image_id,
            rank=first_rank + position,
            score=scores[image_id],
            cosine=scores[image_id]
            if cosine_is_score
            else None
            if cosine is None
            else float(cosine),
            category=row_category,
            prompt=prompt,
            caption=caption,
            url=url,
            image_url=image_url(image_id),
            thumb_url=thumb_url(image_id),
            width=width,
            height=height,
            prompt_source=PROMPT_SOURCES.get(source) if prompt else None,
            prompt_random=bool(prompt_model) and random_weights(prompt_model),
            why=list((why or {}).get(image_id, [])),
        )
        for position, (
            image_id,
            row_category,
            url,
            caption,
            width,
            height,
            prompt,
            source,
            prompt_model,
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


def any_image_stored(conn: psycopg.Connection) -> bool:
    """Whether the store holds a downloaded image at all."""
    (stored,) = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM raw_images WHERE status = 'ok')"
    ).fetchone()
    return stored


def known_categories(conn: psycopg.Connection) -> list[str]:
    """Every category with a stored image, sorted."""
    rows = conn.execute(
        "SELECT DISTINCT category FROM raw_images WHERE status = 'ok' ORDER BY 1"
    ).fetchall()
    return [c for (c,) in rows]
