"""Training sets read from the feature store, across all categories."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg

PROMPT_SOURCES = {
    "generated": ("generated",),
    "link_caption": ("link_caption",),
    "both": ("generated", "link_caption"),
}


@dataclass
class PairSet:
    """(text, image) pairs: row i pairs `texts[i]` with `image_ids[i]` and `vectors[i]`."""

    texts: list[str]
    image_ids: list[str]
    vectors: np.ndarray


@dataclass
class ImageSet:
    """Images with their stored vectors and files."""

    image_ids: list[str]
    vectors: np.ndarray
    paths: list[str]

    def only(self, image_ids: set[str]) -> ImageSet:
        """The images of `image_ids`, in this set's order."""
        rows = [i for i, image_id in enumerate(self.image_ids) if image_id in image_ids]
        return ImageSet(
            [self.image_ids[i] for i in rows], self.vectors[rows], [self.paths[i] for i in rows]
        )


def alignment_pairs(conn: psycopg.Connection, embedding_model: str, source: str) -> PairSet:
    """Every prompt of `source` beside its image's vector from `embedding_model`."""
    if source not in PROMPT_SOURCES:
        raise ValueError(f"prompt source must be one of {sorted(PROMPT_SOURCES)}, got {source!r}")
    rows = conn.execute(
        """
        SELECT p.prompt, p.image_id, e.embedding
        FROM image_prompts p
        JOIN image_embeddings e ON e.image_id = p.image_id AND e.model = %s
        WHERE p.source = ANY(%s) AND btrim(p.prompt) <> ''
        ORDER BY p.image_id, p.source, p.model
        """,
        (embedding_model, list(PROMPT_SOURCES[source])),
    ).fetchall()
    return PairSet(
        texts=[r[0] for r in rows],
        image_ids=[r[1] for r in rows],
        vectors=_stack([r[2] for r in rows]),
    )


def embedded_images(conn: psycopg.Connection, embedding_model: str) -> ImageSet:
    """Every image with a vector from `embedding_model`, with one stored file path."""
    rows = conn.execute(
        """
        SELECT DISTINCT ON (e.image_id) e.image_id, e.embedding, r.path
        FROM image_embeddings e
        JOIN raw_images r ON r.image_id = e.image_id AND r.status = 'ok'
        WHERE e.model = %s
        ORDER BY e.image_id, r.path
        """,
        (embedding_model,),
    ).fetchall()
    return ImageSet(
        image_ids=[r[0] for r in rows],
        vectors=_stack([r[1] for r in rows]),
        paths=[r[2] for r in rows],
    )


def _stack(vectors: list) -> np.ndarray:
    if not vectors:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([v.to_numpy() for v in vectors]).astype(np.float32)
