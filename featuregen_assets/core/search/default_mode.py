"""Which mode a text query without one gets, and hybrid's list weights: the settings, else
what the store's own research report measured (the mode best among the served modes on its
test split; the weights best on its validation split), else `modes.FALLBACK_DEFAULT` and
`options.DEFAULT_WEIGHTS`."""

from __future__ import annotations

import json
from pathlib import Path

from featuregen_assets.core.search.expiring import Expiring
from featuregen_assets.core.search.modes import BY_NAME, FALLBACK_DEFAULT, mode_named
from featuregen_assets.core.search.options import DEFAULT_WEIGHTS, SearchSettings, parse_weights

SERVED_PREFIX = "served mode: "  # report rows of the served modes: "served mode: <name>"
DEFAULT_METRIC = "recall@5"
DEFAULT_SETS = ("template", "paraphrase", "partial_object")  # averaged to choose the default
RECHECK_S = 60.0  # how often a running service looks for a newer report
TUNED_WEIGHTS = "hybrid_weights"  # report.json: the weights chosen on the validation split


def measured_default(report_json: Path) -> tuple[str, str] | None:
    """(mode, why) from a report.json's served-mode rows: the mode with the highest mean
    `DEFAULT_METRIC` over `DEFAULT_SETS`; None when it has no such rows."""
    try:
        rows = json.loads(report_json.read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    scores: dict[str, dict[str, float]] = {}
    for row in rows:
        name = str(row.get("method", "")).removeprefix(SERVED_PREFIX)
        if (
            str(row.get("method", "")).startswith(SERVED_PREFIX)
            and name in BY_NAME
            and row.get("metric") == DEFAULT_METRIC
            and row.get("query_set") in DEFAULT_SETS
        ):
            scores.setdefault(name, {})[row["query_set"]] = float(row["value"])
    complete = {m: s for m, s in scores.items() if len(s) == len(DEFAULT_SETS)}
    if not complete:
        return None
    means = {m: sum(s.values()) / len(s) for m, s in complete.items()}
    best = max(sorted(means), key=means.get)
    figures = ", ".join(f"{m} {v:.3f}" for m, v in sorted(means.items(), key=lambda p: -p[1]))
    return best, (
        f"best mean {DEFAULT_METRIC} over {', '.join(DEFAULT_SETS)} queries in the research"
        f" report {report_json.parent.name} ({figures})"
    )


def measured_weights(report_json: Path) -> tuple[dict[str, float], str] | None:
    """(weights, why) from a report.json's `TUNED_WEIGHTS`; None when it has none."""
    try:
        tuned = json.loads(report_json.read_text())[TUNED_WEIGHTS]
        weights = parse_weights([f"{name}={value}" for name, value in tuned["weights"].items()])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    figures = ", ".join(f"{name}={value:g}" for name, value in weights.items())
    return weights, (
        f"{figures}: chosen on the validation split of the research report"
        f" {report_json.parent.name}"
    )


def newest_report(reports_dir: Path | None) -> Path | None:
    """The newest `<version>/report.json` under the research report's artifacts, or None."""
    if reports_dir is None or not reports_dir.is_dir():
        return None
    found = sorted(reports_dir.glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


class DefaultMode:
    """The default mode and hybrid's weights, each with why, looked up again at most every
    `RECHECK_S` seconds."""

    def __init__(self, settings: SearchSettings, reports_dir: Path | None = None) -> None:
        self.settings = settings
        self.reports_dir = reports_dir
        self._measured: Expiring[tuple] = Expiring(RECHECK_S)

    def __call__(self) -> tuple[str, str]:
        """(mode name, one line saying what chose it)."""
        if self.settings.default_mode:
            return mode_named(self.settings.default_mode).name, "set by FEATUREGEN_SEARCH_MODE"
        return self._measured.get("mode", self._measure_mode)

    def hybrid_weights(self) -> tuple[dict[str, float], str]:
        """(each list's weight in hybrid's fusion, one line saying what chose them)."""
        if self.settings.hybrid_weights is not None:
            return self.settings.weights(), "set by FEATUREGEN_HYBRID_WEIGHTS"
        return self._measured.get("weights", self._measure_weights)

    def _measure_mode(self) -> tuple[str, str]:
        report = newest_report(self.reports_dir)
        measured = measured_default(report) if report else None
        return measured or (
            FALLBACK_DEFAULT,
            "no stored research report measures the served modes yet: hybrid reads every list",
        )

    def _measure_weights(self) -> tuple[dict[str, float], str]:
        report = newest_report(self.reports_dir)
        measured = measured_weights(report) if report else None
        return measured or (parse_weights(DEFAULT_WEIGHTS), "the built-in weights")
