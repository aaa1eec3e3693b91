"""Step progress: a line in the run log every few seconds, and a bar on a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO, TypeVar

BAR_WIDTH = 30
LOG_EVERY_S = 5.0

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """Where a long step (a download run, a model step) stands."""

    done: int
    total: int | None
    ok: int
    failed: int
    elapsed_s: float
    rate: float


_terminal: TextIO | None = None


def terminal() -> TextIO:
    """Where lines meant for the person at the terminal go: stderr, unless a CLI run has sent
    stderr to its log file for the run's length (`set_terminal`)."""
    return _terminal or sys.stderr


def set_terminal(stream: TextIO | None) -> None:
    """Send `terminal()` lines to `stream` (None: back to stderr)."""
    global _terminal
    _terminal = stream


class ProgressReporter:
    """A progress callback (`download_links` takes one; `track` drives one over any items).

    Logs through `log` every LOG_EVERY_S seconds and at the end; with `bar` and stderr a
    terminal, also redraws a bar twice a second.
    """

    def __init__(
        self, label: str, log: Callable[[str], None], unit: str = "links", bar: bool = False
    ) -> None:
        self.label = label
        self.log = log
        self.unit = unit
        self.bar = bar and terminal().isatty()
        self.interval_s = 0.5 if self.bar else LOG_EVERY_S
        self._last_logged = 0.0

    def __call__(self, progress: Progress) -> None:
        finished = progress.total is not None and progress.done >= progress.total
        if self.bar:
            self._draw(progress, finished)
        if finished or progress.elapsed_s - self._last_logged >= LOG_EVERY_S:
            self._last_logged = progress.elapsed_s
            total = "?" if progress.total is None else progress.total
            self.log(
                f"{self.label}: {progress.done}/{total} {self.unit},"
                f" {progress.ok} ok, {progress.failed} failed, {progress.rate:.1f} {self.unit}/s"
                + ("" if finished else _time_left(progress))
            )

    def _draw(self, progress: Progress, finished: bool) -> None:
        total = progress.total or 0
        filled = int(BAR_WIDTH * progress.done / total) if total else 0
        out = terminal()
        out.write(
            f"\r{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}]"
            f" {progress.done}/{total or '?'}  ok {progress.ok}  failed {progress.failed}"
            f"  {progress.rate:.0f}/s" + ("\n" if finished else "")
        )
        out.flush()


def _time_left(progress: Progress) -> str:
    if not progress.total or not progress.rate:
        return ""
    seconds = round((progress.total - progress.done) / progress.rate)
    return f", about {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d} left"


def track(
    items: Iterable[T], total: int, failed: Callable[[T], bool], report: ProgressReporter
) -> Iterator[T]:
    """`items` unchanged, reporting how many have passed (and how many `failed`) as they do."""
    start = last = time.monotonic()
    done = bad = 0

    def progress(now: float) -> Progress:
        elapsed = now - start
        return Progress(done, total, done - bad, bad, elapsed, done / elapsed if elapsed else 0.0)

    for item in items:
        done += 1
        bad += failed(item)
        now = time.monotonic()
        if now - last >= report.interval_s:
            last = now
            report(progress(now))
        yield item
    if done:
        report(progress(time.monotonic()))
