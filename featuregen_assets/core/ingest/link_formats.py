"""Where a category's link file is: `<category>.txt` in the links directory."""

from __future__ import annotations

from pathlib import Path

LINK_FILE_SUFFIXES = (".txt",)


def find_link_file(directory: Path, category: str) -> Path | None:
    """The category's link file in `directory`, or None when it has none."""
    for suffix in LINK_FILE_SUFFIXES:
        path = directory / f"{category}{suffix}"
        if path.is_file():
            return path
    return None


def missing_link_file_message(directory: Path, category: str) -> str:
    """One line saying that the category has no link file and what was expected."""
    expected = " or ".join(f"{category}{suffix}" for suffix in LINK_FILE_SUFFIXES)
    return f"no link file for category {category!r}: expected {expected} in {directory}"
