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
