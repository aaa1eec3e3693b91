from pathlib import Path

import pytest

from featuregen_assets.core.ingest.links import category_error, parse_link_file


def test_parse_link_file_keeps_urls_captions_and_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "cafe.txt"
    path.write_text(
        "# a comment\n"
        "\n"
        "http://a.example/1.jpg\ta red circle\n"
        "   \n"
        "http://a.example/2.jpg\n"
        "not a url at all\n"
        "\tcaption without url\n"
        "http://a.example/1.jpg\tthe same URL again\n"
        "http://a.example/3.jpg\t  \n",
        encoding="utf-8",
    )
    parsed = parse_link_file(path)
    assert parsed.category == "cafe"
    assert [(link.url, link.caption, link.line_no) for link in parsed.links] == [
        ("http://a.example/1.jpg", "a red circle", 3),
        ("http://a.example/2.jpg", None, 5),
        ("http://a.example/3.jpg", None, 9),
    ]
    assert parsed.report.skipped.counts == {"not a URL": 1, "no URL before the TAB": 1}
    assert parsed.report.skipped.examples["not a URL"] == ["line 6: 'not a url at all'"]
    assert parsed.report.duplicates.total == 1


def test_undecodable_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "bank.txt"
    path.write_bytes(b"http://a.example/1.jpg\n\xff\xfe broken\nhttp://a.example/2.jpg\n")
    parsed = parse_link_file(path)
    assert [link.line_no for link in parsed.links] == [1, 3]
    assert parsed.report.skipped.counts == {"line is not valid UTF-8": 1}
    [example] = parsed.report.skipped.examples["line is not valid UTF-8"]
    assert example.startswith("line 2: ") and "\ufffd" in example


@pytest.mark.parametrize("name", ["city_street", "road-accident", "shop", "a1"])
def test_valid_categories(name: str) -> None:
    assert category_error(name) is None


@pytest.mark.parametrize("name", ["", "City", "has space", "comma,name", "-lead", "x" * 65, "é"])
def test_invalid_categories(name: str) -> None:
    assert category_error(name)
