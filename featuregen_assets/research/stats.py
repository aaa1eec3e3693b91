"""Per-query retrieval outcomes and their 95 % bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from featuregen_assets.core.training.metrics import ranks_of_positives

RECALL_KS = (1, 5, 10)
BOOTSTRAP_SAMPLES = 1000


UnitStatistic = Callable[[np.ndarray], float]  # the statistic over units (indices, repeats)


@dataclass(frozen=True)
class Estimate:
    """A statistic over n units with its 95 % percentile-bootstrap interval; `of_units`, where
    known, recomputes it over any resample of the units' indices (for paired tests)."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    of_units: UnitStatistic | None = field(default=None, compare=False, repr=False)


def bootstrap(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> Estimate:
    """`statistic` of `values` (one per query) with a 95 % interval from resampling queries."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(samples, len(values)))
    if statistic is np.mean:
        resampled = values[draws].mean(axis=1)
    else:
        resampled = np.array([statistic(values[d]) for d in draws])
    low, high = np.percentile(resampled, [2.5, 97.5])

    def of_units(indices: np.ndarray) -> float:
        return float(statistic(values[indices]))

    return Estimate(float(statistic(values)), float(low), float(high), len(values), of_units)


def paired_difference(
    a: UnitStatistic, b: UnitStatistic, n: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> Estimate:
    """a - b over the same n units, with a 95 % interval from resampling the units once for
    both (a paired bootstrap: what the two share, e.g. a query's difficulty, cancels)."""
    every = np.arange(n)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(samples, n))
    differences = np.array([a(d) - b(d) for d in draws])
    low, high = np.percentile(differences, [2.5, 97.5])
    return Estimate(float(a(every) - b(every)), float(low), float(high), n)


def retrieval_estimates(
    scores: np.ndarray,
    positives: np.ndarray,
    matches: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Estimate]:
    """recall@1/5/10, MRR and median rank (and attribute precision@5/10 when `matches`, the
    gallery images that show every attribute a query names, is given), with intervals."""
    ranks = ranks_of_positives(scores, positives)
    out = {f"recall@{k}": bootstrap(ranks <= k, seed=seed) for k in RECALL_KS}
    out["mrr"] = bootstrap(1.0 / ranks, seed=seed)
    out["median_rank"] = bootstrap(ranks, np.median, seed=seed)
    if matches is not None:
        order = np.argsort(-scores, axis=1, kind="stable")
        for k in (5, 10):
            top = np.take_along_axis(matches, order[:, :k], axis=1)
            out[f"attribute_precision@{k}"] = bootstrap(top.mean(axis=1), seed=seed)
    return out


def chance_estimates(
    positives: np.ndarray, matches: np.ndarray | None = None
) -> dict[str, Estimate]:
    """Exact expectations of the same figures for a uniformly random ranking (no interval)."""
    from featuregen_assets.core.training.metrics import chance_recall_at_k

    n = positives.shape[1]
    counts = positives.sum(axis=1)
    exact = {
        f"recall@{k}": float(np.mean([chance_recall_at_k(n, int(p), k) for p in counts]))
        for k in RECALL_KS
    }
    exact["median_rank"] = float(np.median((n + 1) / (counts + 1)))
    exact["mrr"] = float(np.mean([_chance_mrr(n, int(p)) for p in counts]))
    if matches is not None:
        share = float(matches.mean())
        exact["attribute_precision@5"] = exact["attribute_precision@10"] = share
    return {k: Estimate(v, v, v, len(counts)) for k, v in exact.items()}


def _chance_mrr(n: int, p: int) -> float:
    """E[1 / rank of the best of p positives] among n under a random order."""
    from math import comb

    total = comb(n, p)
    return sum(comb(n - r, p - 1) / total / r for r in range(1, n - p + 2))
