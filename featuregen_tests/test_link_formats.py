"""CSV, TSV, Parquet and JSON-lines link files read as the equivalent .txt does."""

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featuregen_assets.core.ingest.link_formats import (
    Columns,
    LinkFileError,
    as_text_lines,
    find_link_file,
    write_as_text,
)
from featuregen_assets.core.ingest.links import parse_link_file

# (url, caption) rows; None = an empty cell. Rows 4 and 6 are bad, row 5 repeats row 1.
ROWS = [
    ("http://127.0.0.1/a.jpg", "a red circle"),
    ("http://127.0.0.1/b.jpg", None),
    ("https://example.org/c.png", "two words\tand a tab"),
    ("not a url", "skipped"),
    ("http://127.0.0.1/a.jpg", "again"),
    (None, "a caption without its url"),
    ("http://127.0.0.1/d.jpg", "multi\nline caption"),
]


def _txt(rows) -> str:
    """The rows written as a .txt link file by hand (what each format must equal)."""
    lines = []
    for url, caption in rows:
        caption = caption and " ".join(caption.split())
        lines.append(f"{url}\t{caption}" if url and caption else (url or ""))
    return "\n".join(lines) + "\n"


def _write(path: Path, rows, url_col: str = "url", caption_col: str = "caption") -> Path:
    records = [{url_col: url, caption_col: caption, "other": 1} for url, caption in rows]
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(
                f, [url_col, caption_col, "other"], delimiter="," if path.suffix == ".csv" else "\t"
            )
            writer.writeheader()
            writer.writerows(records)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=3)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_each_format_gives_the_rows_of_the_equivalent_txt(tmp_path: Path, suffix: str) -> None:
    expected = parse_link_file(_write_text(tmp_path / "expected.txt", _txt(ROWS)))
    source = _write(tmp_path / f"cafe{suffix}", ROWS, "URL", "TEXT")
    report = write_as_text(source, Columns("URL", "TEXT"), tmp_path / "out" / "cafe.txt")
    got = parse_link_file(tmp_path / "out" / "cafe.txt")
    assert got.links == expected.links and len(got.links) == 4
    assert got.report.skipped.counts == expected.report.skipped.counts == {"not a URL": 1}
    assert got.report.skipped.examples["not a URL"][0].startswith("line 4: ")
    assert got.report.duplicates.total == expected.report.duplicates.total == 1
    assert [(b.line_no, b.reason) for b in report.examples] == [(6, "no URL in the row")]
    assert got.links[2].caption == "two words and a tab"


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_missing_url_column_names_the_columns(tmp_path: Path, suffix: str) -> None:
    source = _write(tmp_path / f"cafe{suffix}", ROWS[:2])
    with pytest.raises(LinkFileError, match=r"no URL column 'link' \(columns: url, caption"):
        list(as_text_lines(source, Columns(url_col="link")))


def test_a_missing_caption_column_gives_links_without_captions(tmp_path: Path) -> None:
    source = _write(tmp_path / "cafe.csv", ROWS[:2])
    assert list(as_text_lines(source, Columns(caption_col="nope"))) == [ROWS[0][0], ROWS[1][0]]


def test_unreadable_json_lines_are_bad_rows_with_their_numbers(tmp_path: Path) -> None:
    source = tmp_path / "cafe.jsonl"
    source.write_text('{"url": "http://127.0.0.1/a.jpg"}\n{oops\n[1, 2]\n\n')
    lines = list(as_text_lines(source, Columns()))
    assert lines[0] == "http://127.0.0.1/a.jpg" and lines[3] == ""
    assert [(b.line_no, b.reason.split(" (")[0]) for b in lines[1:3]] == [
        (2, "not JSON"),
        (3, "not a JSON object"),
    ]


def test_one_category_in_two_formats_is_an_error(tmp_path: Path) -> None:
    assert find_link_file(tmp_path, "cafe") is None
    _write(tmp_path / "cafe.csv", ROWS[:1])
    assert find_link_file(tmp_path, "cafe") == tmp_path / "cafe.csv"
    (tmp_path / "cafe.txt").write_text(_txt(ROWS[:1]))
    with pytest.raises(
        LinkFileError, match=r"'cafe' has link files in 2 formats \(cafe.csv, cafe.txt\)"
    ):
        find_link_file(tmp_path, "cafe")
