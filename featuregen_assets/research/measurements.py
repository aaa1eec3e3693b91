"""One row per measurement, as `report.json` holds them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from featuregen_assets.research.stats import Estimate, UnitStatistic


@dataclass(frozen=True)
class Measurement:
    """{question, task, query_set, method, metric, value, ci_low, ci_high, n, seeds}; and,
    not written, the statistic over its units where known (`Estimate.of_units`)."""

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
    of_units: UnitStatistic | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        """JSON-ready."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "of_units"}


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
            question,
            task,
            query_set,
            method,
            metric,
            e.value,
            e.ci_low,
            e.ci_high,
            e.n,
            seeds,
            e.of_units,
        )
        for metric, e in estimates.items()
    ]
