"""Hybrid's list weights chosen on the validation split: the grid's weights with the best mean
`DEFAULT_METRIC` over `DEFAULT_SETS`, so the test split's hybrid rows (and the service's
hybrid, which reads the choice from report.json) are tuned on other images than they report."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from featuregen_assets.core.search.default_mode import DEFAULT_METRIC, DEFAULT_SETS
from featuregen_assets.core.search.modes import CAPTION, IMAGE, KEYWORD
from featuregen_assets.core.training.metrics import ranks_of_positives
from featuregen_assets.research.queries import QueryMatrix

# Reciprocal-rank fusion only compares the weights with each other, so keyword's is 1 or 0.
WEIGHT_GRID = {
    IMAGE: (0.0, 0.25, 0.5, 1.0),
    CAPTION: (0.0, 0.5, 1.0, 2.0, 4.0),
    KEYWORD: (1.0, 0.0),
}
TOP = int(DEFAULT_METRIC.removeprefix("recall@"))

# Fuses a query set's list scores (list → (queries, gallery)) with the given weights.
Fuse = Callable[[Mapping[str, np.ndarray], Mapping[str, float]], np.ndarray]


@dataclass(frozen=True)
class TunedWeights:
    """The chosen weights, their validation figure and how many candidates and queries."""

    weights: dict[str, float]
    value: float
    candidates: int
    queries: int

    def as_dict(self) -> dict:
        """For report.json (`default_mode.TUNED_WEIGHTS`)."""
        return {
            "weights": self.weights,
            "chosen_on": "validation",
            "metric": f"mean {DEFAULT_METRIC} over {', '.join(DEFAULT_SETS)}",
            "value": round(self.value, 4),
            "candidates": self.candidates,
            "queries": self.queries,
        }


def candidate_weights(lists: Sequence[str]) -> list[dict[str, float]]:
    """The grid over ``lists`` (in `WEIGHT_GRID`'s order), every candidate reading two or more
    lists (one list alone is a served mode of its own), none a multiple of another."""
    seen, out = set(), []
    for values in itertools.product(*(WEIGHT_GRID[name] for name in lists)):
        weights = dict(zip(lists, values, strict=True))
        read = [w for w in values if w > 0]
        if len(read) < 2:
            continue
        shape = tuple(round(w / max(read), 6) for w in values)
        if shape not in seen:
            seen.add(shape)
            out.append(weights)
    return out


def tune_weights(
    validation: Mapping[str, tuple[Mapping[str, np.ndarray], QueryMatrix]], fuse: Fuse
) -> TunedWeights | None:
    """The candidate with the best mean `DEFAULT_METRIC` over `DEFAULT_SETS` on the
    validation lists (ties: fewer lists read, then the grid's order); None without every set
    or with fewer than two lists."""
    if not all(name in validation for name in DEFAULT_SETS):
        return None
    lists = [name for name in WEIGHT_GRID if name in validation[DEFAULT_SETS[0]][0]]
    candidates = candidate_weights(lists)
    if not candidates:
        return None

    def figure(weights: dict[str, float]) -> float:
        per_set = []
        for query_set in DEFAULT_SETS:
            scores, matrix = validation[query_set]
            ranks = ranks_of_positives(fuse(scores, weights), matrix.positives)
            per_set.append(float((ranks <= TOP).mean()))
        return float(np.mean(per_set))

    scored = [(figure(w), -sum(v > 0 for v in w.values()), -i) for i, w in enumerate(candidates)]
    best = max(range(len(candidates)), key=lambda i: scored[i])
    return TunedWeights(
        candidates[best],
        scored[best][0],
        len(candidates),
        sum(len(validation[s][1].texts) for s in DEFAULT_SETS),
    )
