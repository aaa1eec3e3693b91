"""Link files: `<category>.txt`, one URL a line with an optional TAB and caption.

Every line ends as a `Link` or a counted skip (`Tally`: counts by reason with a few bounded
examples, so memory and log output stay flat however many lines are bad). A URL listed again,
also in another spelling of the same address (`#fragment`, scheme or host case), is a counted
duplicate. Other readers (CSV, Parquet, ...) build their records with `make_link`.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

from featuregen_assets.core.ingest.netpolicy import BadURLError, normalize_url

CATEGORY_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_CATEGORY_LENGTH = 64
MAX_LINE_BYTES = 2**20  # a longer line is skipped unread; a URL's own limit is in netpolicy
EXAMPLES_PER_REASON = 3
EXAMPLE_CHARS = 120
BOM = b"\xef\xbb\xbf"
CAPTION_CONTROL_REPLACEMENT = "\ufffd"
_SUSPECT = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")  # what _url_error looks at closer
_SPACE = re.compile(r"\s")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's Cc: C0, DEL and C1
_CAPTION_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # Cc but TAB
DUPLICATE = "same URL as an earlier line (once normalised: no #fragment, scheme and host case)"


@dataclass(frozen=True)
class Link:
    """One image link of a category's link file."""

    url: str
    caption: str | None = None
    line_no: int = 0


class BadLine(NamedTuple):
    """A line of a link file that was skipped, with the reason (a tuple: junk is cheap)."""

    line_no: int
    reason: str
    text: str


@dataclass
class Tally:
    """Things counted by reason, keeping only the first few of each reason as examples."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        """Count one; keep `example` (cut to EXAMPLE_CHARS) if few of its reason are kept."""
        if self._wants_example(reason):
            cut = example if len(example) <= EXAMPLE_CHARS else f"{example[:EXAMPLE_CHARS]}…"
            self.examples[reason].append(cut)

    def add_line(self, reason: str, line_no: int, text: str) -> None:
        """Count one line of a link file (formatted only when kept as an example)."""
        if self._wants_example(reason):
            self.examples[reason].append(f"line {line_no}: {text[:EXAMPLE_CHARS]!r}")

    def _wants_example(self, reason: str) -> bool:
        """Count one of `reason`; whether its example is to be kept."""
        self.counts[reason] += 1
        return len(self.examples.setdefault(reason, [])) < EXAMPLES_PER_REASON

    @property
    def total(self) -> int:
        """Things counted, all reasons together."""
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """One line per reason: `<count> × <reason>, e.g. <examples>`, most frequent first."""
        return [
            f"{count} × {reason}, e.g. {'; '.join(self.examples[reason])}"
            for reason, count in self.counts.most_common()
        ]


@dataclass
class LineReport:
    """What reading a link file skipped (`skipped`), merged (`duplicates`) and cleaned."""

    skipped: Tally = field(default_factory=Tally)
    duplicates: Tally = field(default_factory=Tally)
    cleaned: Tally = field(default_factory=Tally)


@dataclass
class LinkFile:
    """A parsed link file: its links in file order (first occurrence of each URL) and report."""

    category: str
    links: list[Link] = field(default_factory=list)
    report: LineReport = field(default_factory=LineReport)


def category_error(name: str) -> str | None:
    """Why `name` is not a valid category slug, or None when it is one."""
    if not name:
        return "empty category name"
    if len(name) > MAX_CATEGORY_LENGTH:
        return f"category name longer than {MAX_CATEGORY_LENGTH} characters"
    if not CATEGORY_PATTERN.fullmatch(name):
        return "category name must match [a-z0-9][a-z0-9_-]* (lower-case letters, digits, _ and -)"
    return None


def category_of(path: Path) -> str:
    """The category a link file stands for: its file name without the format's suffix
    (`cats.txt`, `cats.csv` → `cats`)."""
    return path.name.removesuffix(path.suffix)


def file_digest(path: Path) -> str:
    """A short sha256 of the file's bytes, to tell a changed link file from an unchanged one."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def url_key(url: str) -> str:
    """The key of a link's row: the sha256 of the URL as written (any length fits an index)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def _url_error(url: str) -> str | None:
    if not _SUSPECT.search(url):
        return None
    if "://" not in url and _SPACE.search(url):
        return "not a URL"
    if _CONTROL.search(url):
        return "control character in URL"
    return None


def _clean_caption(caption: str) -> tuple[str | None, bool]:
    """The caption with control characters (NUL included) replaced; whether any were."""
    cleaned, replaced = _CAPTION_CONTROL.subn(CAPTION_CONTROL_REPLACEMENT, caption)
    return cleaned.strip() or None, replaced > 0


def make_link(line_no: int, url: str, caption: str | None) -> tuple[Link | BadLine, bool]:
    """A record from one line's fields: a `Link`, or a `BadLine` with the reason; and whether
    the caption's control characters were replaced (PostgreSQL cannot store NUL)."""
    url = url.strip()
    if not url:
        return BadLine(line_no, "no URL before the TAB", caption or ""), False
    error = _url_error(url)
    if error:
        return BadLine(line_no, error, url), False
    if caption is None:
        return Link(url=url, line_no=line_no), False
    cleaned, changed = _clean_caption(caption)
    return Link(url=url, caption=cleaned, line_no=line_no), changed


def _parse_line(line_no: int, raw: bytes, report: LineReport | None) -> Link | BadLine | None:
    """One line's record (None for a blank line or a comment)."""
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        shown = raw[:EXAMPLE_CHARS].decode("utf-8", "replace")
        return BadLine(line_no, "line is not valid UTF-8", shown)
    stripped = text.strip()
    if not stripped or stripped[0] == "#":
        return None
    url, tab, caption = text.partition("\t")
    record, cleaned = make_link(line_no, url, caption if tab else None)
    if cleaned and report is not None:
        report.cleaned.add_line("control characters in caption replaced by U+FFFD", line_no, text)
    return record


def _records(handle: BinaryIO, report: LineReport | None) -> Iterator[tuple[int, Link | BadLine]]:
    """`(byte offset, record)` of each line of an open link file, from its start. A line over
    MAX_LINE_BYTES is skipped in bounded reads; a UTF-8 byte-order mark at the start is
    dropped."""
    handle.seek(0)
    readline = handle.readline
    line_no = offset = 0
    while raw := readline(MAX_LINE_BYTES + 1):
        line_no += 1
        start, offset = offset, offset + len(raw)
        if len(raw) > MAX_LINE_BYTES and raw[-1:] != b"\n":
            while (rest := readline(MAX_LINE_BYTES)) and rest[-1:] != b"\n":
                offset += len(rest)
            offset += len(rest)
            yield start, BadLine(line_no, f"line longer than {MAX_LINE_BYTES} bytes", "")
            continue
        record = _parse_line(line_no, raw.removeprefix(BOM) if line_no == 1 else raw, report)
        if record is not None:
            yield start, record


def iter_lines(path: Path, report: LineReport | None = None) -> Iterator[Link | BadLine]:
    """Stream a link file: a `Link` per usable line, a `BadLine` per unusable one. Captions
    whose control characters were replaced are counted in `report.cleaned`."""
    with path.open("rb") as handle:
        for _, record in _records(handle, report):
            yield record


def dedup_key(url: str) -> str:
    """What makes two URLs one link: the normalised URL, or the URL itself when it has none."""
    try:
        return normalize_url(url)
    except BadURLError:
        return url


def unique_link_offsets(handle: BinaryIO, report: LineReport) -> Iterator[tuple[int, Link]]:
    """`(byte offset, link)` of an open link file's links, a URL listed twice once (its first
    line). Bad lines, repeated URLs (also another spelling of the same address) and cleaned
    captions are counted in `report`."""
    seen: set[str] = set()
    for offset, item in _records(handle, report):
        if isinstance(item, BadLine):
            report.skipped.add_line(item.reason, item.line_no, item.text)
            continue
        key = dedup_key(item.url)
        if key in seen:
            report.duplicates.add_line(DUPLICATE, item.line_no, item.url)
        else:
            seen.add(key)
            yield offset, item


def unique_links(path: Path, report: LineReport) -> Iterator[Link]:
    """Stream a link file's links, as `unique_link_offsets` finds them."""
    with path.open("rb") as handle:
        for _, link in unique_link_offsets(handle, report):
            yield link


def links_at(handle: BinaryIO, places: Iterable[tuple[int, int]]) -> Iterator[Link]:
    """The links at `(byte offset, line number)` places that `unique_link_offsets` gave for the
    same open file: a second pass that reads only those lines, however many others there are."""
    for offset, line_no in places:
        handle.seek(offset)
        raw = handle.readline(MAX_LINE_BYTES + 1)
        record = _parse_line(line_no, raw.removeprefix(BOM) if offset == 0 else raw, None)
        if isinstance(record, Link):
            yield record


def parse_link_file(path: Path) -> LinkFile:
    """Read a whole link file into memory (see `unique_links` to stream it)."""
    parsed = LinkFile(category=category_of(path))
    parsed.links = list(unique_links(path, parsed.report))
    return parsed
