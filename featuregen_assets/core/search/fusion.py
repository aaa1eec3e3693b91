"""Reciprocal-rank fusion of ranked lists (Cormack, Clarke & Büttcher, SIGIR 2009)."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_CONSTANT = 60  # the paper's k: large enough that the top few ranks do not dominate


def reciprocal_rank_fusion(
    lists: Sequence[Sequence[str]], constant: float = DEFAULT_CONSTANT
) -> list[tuple[str, float]]:
    """(id, fused score) best first, ties by id: each list adds 1 / (constant + rank) for an
    id it holds at 1-based rank."""
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (constant + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
