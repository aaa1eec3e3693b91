"""One row per measurement, as `report.json` holds them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from featuregen_assets.core.research.stats import Estimate


@dataclass(frozen=True)
class Measurement:
    """{question, task, query_set, method, metric, value, ci_low, ci_high, n, seeds}."""

    question: str
    task: str
    query_set: str
    method: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    seeds: int = 1

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


def rows(
    question: str,
    task: str,
    query_set: str,
    method: str,
    estimates: dict[str, Estimate],
    seeds: int = 1,
) -> list[Measurement]:
    """A Measurement per estimate."""
    return [
        Measurement(
            question, task, query_set, method, metric, e.value, e.ci_low, e.ci_high, e.n, seeds
        )
        for metric, e in estimates.items()
    ]
