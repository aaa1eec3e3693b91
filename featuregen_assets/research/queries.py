"""Query sets with their truth, and their positives over a gallery of image ids.

A query file is JSON lines, one query each: `query_set`, `query`, `positives` (image ids),
optional `matches` (ids showing every attribute the query names), `hard_negative` (the id of
an attribute-swap twin), `category`, `compositional`, `image_id` (the image it was written
for). `featuregen demo` writes one from the scenes' truth; without one, the test images'
stored captions are the template queries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featuregen_assets.core.training.splits import word_bag


@dataclass(frozen=True)
class Query:
    """One query and its truth (ids)."""

    query_set: str
    text: str
    positives: frozenset[str]
    image_id: str | None = None
    category: str | None = None
    matches: frozenset[str] | None = None
    hard_negative: str | None = None
    compositional: bool = False


@dataclass
class QueryMatrix:
    """Queries of one set over a gallery: boolean positives (and matches) per gallery image."""

    queries: list[Query]
    positives: np.ndarray
    matches: np.ndarray | None = None
    texts: list[str] = field(default_factory=list)
    dropped_as_trained: int = 0  # distinct query texts left out: a training text's word bag


def read_queries(path: Path) -> list[Query]:
    """The queries of a JSON-lines query file."""
    out = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            out.append(
                Query(
                    query_set=r["query_set"],
                    text=r["query"],
                    positives=frozenset(r["positives"]),
                    image_id=r.get("image_id"),
                    category=r.get("category"),
                    matches=frozenset(r["matches"]) if r.get("matches") is not None else None,
                    hard_negative=r.get("hard_negative"),
                    compositional=bool(r.get("compositional", False)),
                )
            )
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}:{number}: not a query record ({error})") from error
    return out


def caption_queries(
    captions: dict[str, Sequence[str]], test_ids: Iterable[str], categories: dict[str, str]
) -> list[Query]:
    """Template queries from stored captions: each caption of a test image, positives all
    test images with that caption."""
    test = set(test_ids)
    holders: dict[str, set[str]] = {}
    for image_id in test:
        for text in captions.get(image_id, ()):
            holders.setdefault(text, set()).add(image_id)
    return [
        Query(
            "template", text, frozenset(ids), image_id=min(ids), category=categories.get(min(ids))
        )
        for text, ids in sorted(holders.items())
    ]


def over_gallery(
    queries: Sequence[Query],
    gallery: Sequence[str],
    exclude_texts: Iterable[str] = (),
    only_from: Iterable[str] | None = None,
) -> QueryMatrix:
    """The queries with a positive in `gallery` (and, with `only_from`, written for one of
    those images), merged by text; positives restricted to the gallery. A query with the bag
    of words of one of `exclude_texts` (the training texts) is left out and counted."""
    column = {image_id: c for c, image_id in enumerate(gallery)}
    excluded = {word_bag(t) for t in exclude_texts}
    allowed = set(only_from) if only_from is not None else None
    merged: dict[str, Query] = {}
    dropped: set[str] = set()
    for q in queries:
        if allowed is not None and q.image_id not in allowed:
            continue
        if not any(p in column for p in q.positives) or q.text in merged:
            continue
        if word_bag(q.text) in excluded:
            dropped.add(q.text)
            continue
        merged[q.text] = q
    kept = list(merged.values())
    positives = np.zeros((len(kept), len(gallery)), dtype=bool)
    has_matches = bool(kept) and all(q.matches is not None for q in kept)
    matches = np.zeros_like(positives) if has_matches else None
    for row, q in enumerate(kept):
        positives[row, [column[p] for p in q.positives if p in column]] = True
        if matches is not None:
            matches[row, [column[m] for m in q.matches if m in column]] = True
    return QueryMatrix(kept, positives, matches, [q.text for q in kept], len(dropped))
