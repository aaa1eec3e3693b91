"""Method-vs-method statements as paired tests: the difference on the same units (queries,
images), its 95 % interval from one resample of those units for both, kept as a report row."""

from __future__ import annotations

from featuregen_assets.research.measurements import Measurement
from featuregen_assets.research.stats import paired_difference

TASK = "paired_difference"
MINUS = " − "


class PairedTests:
    """Compares two measurements of one query set and metric over the same units; every
    comparison made is kept in `rows` (task `paired_difference`, method `A − B`)."""

    def __init__(self, seed: int = 0) -> None:
        self.rows: list[Measurement] = []
        self._seed = seed

    def difference(self, a: Measurement, b: Measurement) -> Measurement | None:
        """a - b with its paired interval, or None where the two were not measured on the
        same units (a statistic without units, another count)."""
        if a.of_units is None or b.of_units is None or a.n != b.n or a.n == 0:
            return None
        if (a.query_set, a.metric) != (b.query_set, b.metric):
            return None
        method = f"{a.method}{MINUS}{b.method}"
        known = next(
            (
                r
                for r in self.rows
                if (r.query_set, r.metric, r.method) == (a.query_set, a.metric, method)
            ),
            None,
        )
        if known is not None:
            return known
        e = paired_difference(a.of_units, b.of_units, a.n, seed=self._seed)
        row = Measurement(
            a.question,
            TASK,
            a.query_set,
            method,
            a.metric,
            e.value,
            e.ci_low,
            e.ci_high,
            e.n,
            max(a.seeds, b.seeds),
        )
        self.rows.append(row)
        return row

    def versus(self, a: Measurement, b: Measurement) -> str:
        """'beats' / 'loses to' / 'is level with' by whether the paired difference's 95 %
        interval excludes 0, with that difference."""
        d = self.difference(a, b)
        if d is None:
            return "is not compared (not measured on the same units)"
        said = f"paired difference {d.value:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}] over {d.n}"
        if d.ci_low > 0:
            return f"beats ({said})"
        if d.ci_high < 0:
            return f"loses to ({said})"
        return f"is level with ({said})"
