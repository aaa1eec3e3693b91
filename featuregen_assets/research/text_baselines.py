"""Text-to-image scorers that need no trained text encoder: what a user has without one.

Each returns a (queries, gallery) score matrix; higher is better; ties count against the
query (`ranks_of_positives`), so a scorer that knows nothing ranks its positives last.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import psycopg

TFIDF_NEIGHBOURS = (1, 5, 10, 20, 50)  # candidates for k, chosen on validation


def category_oracle(
    query_categories: Sequence[str | None], gallery_categories: Sequence[str], seed: int = 0
) -> np.ndarray:
    """The query's true category first, a random order inside it: what the category alone
    buys (an upper bound for any method that only recognises the category)."""
    rng = np.random.default_rng(seed)
    same = (
        np.array(query_categories, dtype=object)[:, None]
        == np.array(gallery_categories, dtype=object)[None, :]
    )
    return same + 0.5 * rng.random(same.shape)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class Tfidf:
    """TF-IDF bag of words fitted on `documents` (unit rows; unknown words ignored)."""

    def __init__(self, documents: Sequence[str]) -> None:
        df = Counter(w for d in documents for w in set(_words(d)))
        self.vocab = {w: i for i, w in enumerate(sorted(df))}
        n = len(documents)
        self.idf = np.array([math.log((1 + n) / (1 + df[w])) + 1 for w in sorted(df)])

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Unit TF-IDF rows of `texts`."""
        out = np.zeros((len(texts), len(self.vocab)))
        for row, text in enumerate(texts):
            for w in _words(text):
                if w in self.vocab:
                    out[row, self.vocab[w]] += 1
        out *= self.idf
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def neighbour_mean_scores(
    similarity: np.ndarray, train_vectors: np.ndarray, gallery_vectors: np.ndarray, k: int
) -> np.ndarray:
    """Average the image vectors of each query's k most similar training texts; score the
    gallery by cosine to that mean (search by caption neighbours, no training)."""
    k = min(k, similarity.shape[1])
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    means = unit(train_vectors)[top].mean(axis=1)
    return unit(means) @ unit(gallery_vectors).T


def keyword_scores(
    conn: psycopg.Connection, queries: Sequence[str], gallery: Sequence[str]
) -> np.ndarray:
    """PostgreSQL full text over each gallery image's link captions and generated prompts:
    ts_rank of the document against the query's words OR-ed (an image with more of the
    query's words ranks higher; one with none scores 0)."""
    rows = conn.execute(
        """
        WITH docs AS (
            SELECT g.ord, to_tsvector('english', coalesce(string_agg(t.text, ' '), '')) AS doc
            FROM unnest(%(gallery)s::text[]) WITH ORDINALITY AS g(image_id, ord)
            LEFT JOIN LATERAL (
                SELECT caption AS text FROM raw_images
                WHERE image_id = g.image_id AND caption IS NOT NULL
                UNION ALL
                SELECT prompt FROM image_prompts WHERE image_id = g.image_id
            ) t ON true
            GROUP BY g.ord
        ), asked AS (
            SELECT q.ord, nullif(replace(plainto_tsquery('english', q.text)::text, '&', '|'), '')
                   AS words
            FROM unnest(%(queries)s::text[]) WITH ORDINALITY AS q(text, ord)
        )
        SELECT a.ord, d.ord, ts_rank(d.doc, a.words::tsquery)
        FROM asked a CROSS JOIN docs d
        WHERE a.words IS NOT NULL AND d.doc @@ a.words::tsquery
        """,
        {"gallery": list(gallery), "queries": list(queries)},
    ).fetchall()
    scores = np.zeros((len(queries), len(gallery)))
    for q, g, rank in rows:
        scores[q - 1, g - 1] = rank
    return scores
