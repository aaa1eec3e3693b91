"""`featuregen search` and `featuregen serve` on the command line: output, JSON hits, and the
usage errors (empty or undecodable query, k out of range, unknown category)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featuregen_assets.cli import build_parser, main
from featuregen_tests.search_store import build_search_store


@pytest.fixture
def store(fg_env: Path, database_url: str, tiny_models_dir: Path):
    return build_search_store(database_url, fg_env, tiny_models_dir)


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_search_prints_cosine_scores_and_the_api_hit_schema(store, capsys) -> None:
    assert main(["search", "a red circle", "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "rank  score: cosine similarity (-1…1)"
    assert out[1].lstrip().startswith("1  ")
    prompts = [line.strip() for line in out if line.lstrip().startswith("prompt")]
    assert prompts and all(
        p.startswith("prompt (tiny captioner, random weights): ") for p in prompts
    )
    assert main(["search", "large", "--mode", "keyword", "--json", "-k", "2"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and hits[0]["thumb_url"] == f"/thumbs/{hits[0]['image_id']}"
    picture = store.home / "picture"
    picture.write_bytes(store.files[store.ids[4]])
    assert main(["search", "--image", str(picture), "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["image_id"] == store.ids[4]


def test_search_usage_errors(store, capsys) -> None:
    assert "empty" in _usage_error(["search", "   "], capsys)
    for k in ("0", "1001", "ten"):
        assert "1 to 1,000" in _usage_error(["search", "circle", "-k", k], capsys)
    undecodable = b"caf\xe9".decode("utf-8", "surrogateescape")  # argv bytes that are not UTF-8
    assert "not valid text" in _usage_error(["search", undecodable], capsys)
    assert "one of them" in _usage_error(["search"], capsys)
    assert "cannot read --image" in _usage_error(["search", "--image", "/nowhere.png"], capsys)

    assert main(["search", "circle", "--category", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown category 'nowhere'; known: bank, cafe, shop\n"


def test_search_help_says_what_a_score_is(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "score is the cosine similarity of the query and image vectors" in " ".join(
        capsys.readouterr().out.split()
    )


def test_serve_binds_loopback_by_default(capsys) -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "/docs" in capsys.readouterr().out


def test_search_with_a_file_that_is_not_an_image_says_so_in_one_line(store, capsys) -> None:
    passwd = store.home / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert main(["search", "--image", str(passwd)]) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the embedder's loading bar
    assert last == "error: the file is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF)"


def test_serve_beyond_loopback_needs_a_token_or_says_it_has_none(monkeypatch, capsys) -> None:
    from featuregen_assets.serve.main import ServeRefused, check_exposure

    monkeypatch.delenv("FEATUREGEN_SERVE_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "set FEATUREGEN_SERVE_TOKEN" in err and "--no-token" in err
    assert check_exposure("127.0.0.1", None, False) is None
    assert check_exposure("::1", None, False) is None
    assert "WARNING" in check_exposure("0.0.0.0", None, True)
    assert check_exposure("192.168.1.5", "a" * 16, False) is None
    for bad in ("short", "has space in it 12345", "semi;colon-0123456789"):
        with pytest.raises(ServeRefused, match="at least 16 characters"):
            check_exposure("127.0.0.1", bad, False)
