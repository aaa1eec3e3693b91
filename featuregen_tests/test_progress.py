"""Progress lines of long steps: counts, rate and the time left."""

from featuregen_assets.core.runtime.progress import Progress, ProgressReporter, track


def test_track_passes_items_through_and_reports_the_end() -> None:
    lines: list[str] = []
    report = ProgressReporter("cafe captions", lines.append, unit="images")
    items = list(track(iter(["a", None, "c"]), 3, lambda item: item is None, report))
    assert items == ["a", None, "c"]
    assert len(lines) == 1
    assert lines[0].startswith("cafe captions: 3/3 images, 2 ok, 1 failed, ")
    assert "left" not in lines[0]


def test_nothing_to_track_reports_nothing() -> None:
    lines: list[str] = []
    assert list(track([], 0, bool, ProgressReporter("x", lines.append))) == []
    assert lines == []


def test_a_line_before_the_end_says_the_time_left() -> None:
    lines: list[str] = []
    report = ProgressReporter("bank embeddings", lines.append, unit="images")
    report(Progress(done=100, total=10_000, ok=99, failed=1, elapsed_s=10.0, rate=2.5))
    assert lines == [
        "bank embeddings: 100/10000 images, 99 ok, 1 failed, 2.5 images/s, about 1:06:00 left"
    ]
