"""A category's link file in any of the formats img2dataset users have: `<category>.txt`
(one URL a line, an optional TAB and caption), `.csv`, `.tsv`, `.parquet` or `.jsonl` with a
URL column and an optional caption column (img2dataset's `url_col` / `caption_col`).

Every format is streamed (CSV and JSON lines a row at a time, Parquet in record batches of
the two columns), so memory stays flat however long the file is. `as_text_lines` turns a
tabular file into the .txt format line for line, row N on line N, so the .txt reader, its
checks and its line numbers serve every format.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from featuregen_assets.core.ingest.links import BadLine

TEXT_SUFFIX = ".txt"
TABLE_FORMAT_NAMES = {".csv": "CSV", ".tsv": "TSV", ".parquet": "Parquet", ".jsonl": "JSONL"}
TABLE_SUFFIXES = tuple(TABLE_FORMAT_NAMES)
LINK_FILE_SUFFIXES = (TEXT_SUFFIX, *TABLE_SUFFIXES)
# The formats in words, for help texts: "<category>.txt, .csv, ..." and "CSV/TSV/...".
LINK_FILE_NAMES = "<category>" + ", ".join(LINK_FILE_SUFFIXES)
TABLE_FORMATS = "/".join(TABLE_FORMAT_NAMES.values())
PARQUET_BATCH_ROWS = 8192
MAX_EXAMPLES = 20  # bad rows logged one by one; the rest are counted
_LINE_BREAKS = str.maketrans({"\t": " ", "\r": " ", "\n": " "})


class LinkFileError(LookupError):
    """A link file that cannot be read as a whole (two formats for one category, a missing
    URL column)."""


@dataclass(frozen=True)
class Columns:
    """The columns of a tabular link file that hold each row's URL and caption."""

    url_col: str = "url"
    caption_col: str = "caption"


def link_files(directory: Path) -> list[Path]:
    """The entries of `directory` named like link files (every supported suffix), by name."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in LINK_FILE_SUFFIXES)


def find_link_file(directory: Path, category: str) -> Path | None:
    """The category's link file in `directory`, or None when it has none; `LinkFileError`
    when it has several (of different formats)."""
    found = [
        directory / f"{category}{suffix}"
        for suffix in LINK_FILE_SUFFIXES
        if (directory / f"{category}{suffix}").is_file()
    ]
    if len(found) > 1:
        raise LinkFileError(two_formats_message(category, found))
    return found[0] if found else None


def two_formats_message(category: str, files: list[Path]) -> str:
    """One line saying that the category has link files in several formats."""
    names = ", ".join(sorted(path.name for path in files))
    return f"category {category!r} has link files in {len(files)} formats ({names}): keep one"


def missing_link_file_message(directory: Path, category: str) -> str:
    """One line saying that the category has no link file and what was expected."""
    return (
        f"no link file for category {category!r}: expected {category}{TEXT_SUFFIX}"
        f" (or {', '.join(TABLE_SUFFIXES)}) in {directory}"
    )


def _text(value: object) -> str | None:
    """A cell as text (None for an empty or missing one)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _delimited_rows(path: Path, delimiter: str, columns: Columns) -> Iterator[tuple]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if columns.url_col not in (reader.fieldnames or []):
            raise LinkFileError(_no_url_column(path, columns, reader.fieldnames or []))
        for row in reader:
            yield row.get(columns.url_col), row.get(columns.caption_col)


def _jsonl_rows(path: Path, columns: Columns) -> Iterator[tuple | BadLine]:
    with path.open(encoding="utf-8") as handle:
        for row_no, line in enumerate(handle, start=1):
            if not line.strip():
                yield None, None
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield BadLine(row_no, f"not JSON ({error.msg})", line.strip()[:80])
                continue
            if not isinstance(record, dict):
                yield BadLine(row_no, "not a JSON object", line.strip()[:80])
                continue
            yield record.get(columns.url_col), record.get(columns.caption_col)


def _parquet_rows(path: Path, columns: Columns) -> Iterator[tuple]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if columns.url_col not in names:
        raise LinkFileError(_no_url_column(path, columns, names))
    wanted = [columns.url_col] + ([columns.caption_col] if columns.caption_col in names else [])
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted):
        urls = batch.column(columns.url_col).to_pylist()
        captions = (
            batch.column(columns.caption_col).to_pylist()
            if len(wanted) == 2
            else [None] * len(urls)
        )
        yield from zip(urls, captions, strict=True)


def _no_url_column(path: Path, columns: Columns, names: list[str]) -> str:
    return (
        f"{path.name} has no URL column {columns.url_col!r} (columns: {', '.join(names)}):"
        " name it with url_col"
    )


def table_rows(path: Path, columns: Columns) -> Iterator[tuple[str | None, str | None] | BadLine]:
    """Stream a tabular link file: `(url, caption)` cells of each row in order, or a `BadLine`
    for a row that cannot be read (its number: the data row's, counted from 1)."""
    suffix = path.suffix
    if suffix == ".csv":
        return _delimited_rows(path, ",", columns)
    if suffix == ".tsv":
        return _delimited_rows(path, "\t", columns)
    if suffix == ".jsonl":
        return _jsonl_rows(path, columns)
    if suffix == ".parquet":
        return _parquet_rows(path, columns)
    raise LinkFileError(f"{path.name}: not a tabular link file ({', '.join(TABLE_SUFFIXES)})")


def _text_line(row_no: int, url: object, caption: object) -> str | BadLine:
    """Row `row_no` as a .txt line ("" for a row with no cells), or why it cannot be one."""
    url, caption = _text(url), _text(caption)
    if url is None:
        return BadLine(row_no, "no URL in the row", caption or "") if caption else ""
    if any(ch in url for ch in "\t\r\n"):
        return BadLine(row_no, "control character in URL", url[:80])
    return url.strip() + (f"\t{caption.translate(_LINE_BREAKS)}" if caption else "")


def as_text_lines(path: Path, columns: Columns) -> Iterator[str | BadLine]:
    """Each row of a tabular link file as a line of the .txt format (row N → line N; a row
    that cannot be a line → a `BadLine` with its row number, and an empty line in its place)."""
    for row_no, row in enumerate(table_rows(path, columns), start=1):
        line = row if isinstance(row, BadLine) else _text_line(row_no, *row)
        yield line


@dataclass
class RowReport:
    """The rows of a tabular link file that could not become a line: how many, and the first
    few (memory stays flat however many there are)."""

    bad_rows: int = 0
    examples: list[BadLine] = field(default_factory=list)

    def add(self, bad: BadLine) -> None:
        self.bad_rows += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(bad)


def write_as_text(path: Path, columns: Columns, target: Path) -> RowReport:
    """Write a tabular link file as a .txt link file at `target`, line for line, atomically;
    report the rows that could not become a line (each left as an empty line)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    report = RowReport()
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with part.open("w", encoding="utf-8") as handle:
            for line in as_text_lines(path, columns):
                if isinstance(line, BadLine):
                    report.add(line)
                    line = ""
                handle.write(line + "\n")
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return report
