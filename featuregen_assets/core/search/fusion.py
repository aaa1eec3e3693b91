"""Reciprocal-rank fusion of ranked lists (Cormack, Clarke & Büttcher, SIGIR 2009)."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_CONSTANT = 60  # the paper's k: large enough that the top few ranks do not dominate


def reciprocal_rank_fusion(
    lists: Sequence[Sequence[str]],
    constant: float = DEFAULT_CONSTANT,
    weights: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """(id, fused score) best first, ties by id: each list adds its weight (default 1) /
    (constant + rank) for an id it holds at 1-based rank."""
    scores: dict[str, float] = {}
    for index, ranked in enumerate(lists):
        weight = 1.0 if weights is None else weights[index]
        for rank, item in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (constant + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
