"""Download progress: a line in the run log every few seconds, and a bar on a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from featuregen_assets.core.download import Progress

BAR_WIDTH = 30
LOG_EVERY_S = 5.0


class ProgressReporter:
    """A `download_links` progress callback.

    Logs through `log` every LOG_EVERY_S seconds and at the end; with FEATUREGEN_PROGRESS=bar
    (the CLI sets it) and stderr a terminal, also redraws a bar twice a second.
    """

    def __init__(self, label: str, log: Callable[[str], None]) -> None:
        self.label = label
        self.log = log
        self.bar = os.environ.get("FEATUREGEN_PROGRESS") == "bar" and sys.stderr.isatty()
        self.interval_s = 0.5 if self.bar else LOG_EVERY_S
        self._last_logged = 0.0

    def __call__(self, progress: Progress) -> None:
        finished = progress.total is not None and progress.done >= progress.total
        if self.bar:
            self._draw(progress, finished)
        if finished or progress.elapsed_s - self._last_logged >= LOG_EVERY_S:
            self._last_logged = progress.elapsed_s
            self.log(
                f"{self.label}: {progress.done}/{progress.total or '?'} links,"
                f" {progress.ok} ok, {progress.failed} failed, {progress.rate:.1f} links/s"
            )

    def _draw(self, progress: Progress, finished: bool) -> None:
        total = progress.total or 0
        filled = int(BAR_WIDTH * progress.done / total) if total else 0
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}]"
            f" {progress.done}/{total or '?'}  ok {progress.ok}  failed {progress.failed}"
            f"  {progress.rate:.0f}/s" + ("\n" if finished else "")
        )
        sys.stderr.flush()
