"""Link files: `<category>.txt`, one URL a line with an optional TAB and caption."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

CATEGORY_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_CATEGORY_LENGTH = 64


@dataclass(frozen=True)
class Link:
    """One image link of a category's link file."""

    url: str
    caption: str | None = None
    line_no: int = 0


@dataclass(frozen=True)
class BadLine:
    """A line of a link file that was skipped, with the reason."""

    line_no: int
    reason: str
    text: str


@dataclass
class LinkFile:
    """A parsed link file: its links in file order (first occurrence of each URL) and bad lines."""

    category: str
    links: list[Link] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    duplicates: int = 0


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
    """The category a link file stands for: its file name without `.txt`."""
    return path.name.removesuffix(".txt")


def file_digest(path: Path) -> str:
    """A short sha256 of the file's bytes, to tell a changed link file from an unchanged one."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _line_error(url: str) -> str | None:
    if any(ch.isspace() for ch in url.strip()) and "://" not in url:
        return "not a URL"
    if any(ord(ch) < 32 for ch in url):
        return "control character in URL"
    return None


def iter_lines(path: Path) -> Iterator[Link | BadLine]:
    """Stream a link file: a `Link` per usable line, a `BadLine` per unusable one."""
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield BadLine(line_no, "line is not valid UTF-8", raw[:80].decode("latin-1"))
                continue
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            url, _, caption = text.partition("\t")
            url = url.strip()
            if not url:
                yield BadLine(line_no, "no URL before the TAB", text)
                continue
            error = _line_error(url)
            if error:
                yield BadLine(line_no, error, text)
                continue
            yield Link(url=url, caption=caption.strip() or None, line_no=line_no)


class LineReport(Protocol):
    """Where `unique_links` records what it skipped."""

    bad_lines: list[BadLine]
    duplicates: int


def unique_links(path: Path, report: LineReport) -> Iterator[Link]:
    """Stream a link file's links, a URL listed twice once (its first line).

    Bad lines and repeated URLs are skipped and recorded in `report`.
    """
    seen: set[str] = set()
    for item in iter_lines(path):
        if isinstance(item, BadLine):
            report.bad_lines.append(item)
        elif item.url in seen:
            report.duplicates += 1
        else:
            seen.add(item.url)
            yield item


def parse_link_file(path: Path) -> LinkFile:
    """Read a whole link file into memory (see `unique_links` to stream it)."""
    parsed = LinkFile(category=category_of(path))
    parsed.links = list(unique_links(path, parsed))
    return parsed
