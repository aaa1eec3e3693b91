"""`featuregen search` and `featuregen serve` on the command line: output, JSON hits, the
usage errors (empty or undecodable query, k out of range, unknown category), and a query
answered by the `featuregen serve` running on the same home."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from featuregen_assets.cli import build_parser, main
from featuregen_assets.cli.search_serve import LOADING_HERE, NOTHING_STORED
from featuregen_assets.core.runtime import paths
from featuregen_assets.core.runtime.processes import process_token
from featuregen_assets.serve.discovery import running_server
from featuregen_tests.app_server import free_port
from featuregen_tests.search_store import build_search_store, register_text_encoder


@pytest.fixture
def store(fg_env: Path, database_url: str, tiny_models_dir: Path):
    return build_search_store(database_url, fg_env, tiny_models_dir)


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_search_prints_the_mode_models_scores_and_the_api_hit_schema(store, capsys) -> None:
    assert main(["search", "a red circle", "--mode", "image", "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"image search, 24 images ranked; models: embedding_model {store.embedding_model},"
        " text_encoder_version v1"
    )
    assert out[1] == "rank  score: cosine similarity (-1…1)"
    assert out[2].lstrip().startswith("1  ")
    prompts = [line.strip() for line in out if line.lstrip().startswith("prompt")]
    assert prompts and all(p.startswith("prompt (random-weight captioner): ") for p in prompts)
    assert main(["search", "a red circle", "-k", "3"]) == 0  # the default: hybrid, no report
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("hybrid search") and store.sentence_model in out[0]
    assert "why: " in "\n".join(out)
    assert main(["search", "large", "--mode", "keyword", "--json", "-k", "2"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and hits[0]["thumb_url"] == f"/thumbs/{hits[0]['image_id']}"
    assert hits[0]["why"] == [{"list": "keyword", "rank": 1, "score": hits[0]["score"]}]
    assert main(["search", "red", "--mode", "image", "--version", "v9"]) == 1
    assert "no text encoder version 'v9'" in capsys.readouterr().err
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
    for port in ("0", "99999", "http"):
        assert "1 to 65,535" in _usage_error(["serve", "--port", port], capsys)

    assert main(["search", "circle", "--category", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown category 'nowhere'; known: bank, cafe, shop\n"


def test_search_on_an_empty_store_says_how_to_fill_it(fg_env: Path, capsys) -> None:
    argvs = (["search", "a red circle"], ["search", "red", "--category", "cafe", "--json"])
    for argv in argvs:
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.splitlines() == [f"error: {NOTHING_STORED}"]
    assert "featuregen demo" in NOTHING_STORED and "featuregen run" in NOTHING_STORED

    server = _serve(free_port())  # its answer, no hits of nothing, does not say why: we do
    try:
        _wait_until_answering(fg_env, server)
        for argv in argvs:
            assert main(argv) == 1
            out, err = capsys.readouterr()
            assert out == "" and err.splitlines()[-1] == f"error: {NOTHING_STORED}"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def test_search_help_says_what_a_score_is(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "cosine similarity (-1…1) for caption and image" in " ".join(
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


def _serve(port: int) -> subprocess.Popen:
    """`featuregen serve --port PORT --fp32` on this process's home, in a child process."""
    serve = f"from featuregen_assets.cli import main; main(['serve', '--port', '{port}', '--fp32'])"
    return subprocess.Popen(
        [sys.executable, "-c", serve], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_until_answering(home: Path, server: subprocess.Popen, limit_s: float = 300) -> str:
    """The URL of the server announced in `home`, once it answers a search."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert server.poll() is None, "featuregen serve exited"
        url = running_server(home)
        try:
            if url and httpx.get(f"{url}/api/search", params={"q": "circle"}).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError("featuregen serve did not answer in time")


def test_search_asks_the_server_running_on_its_home(store, capsys) -> None:
    gone = f"{process_token().partition('.')[0]}.1"  # this pid, another process's start time
    stale = {"url": "http://127.0.0.1:9", "process": gone}
    paths.serve_file(store.home).write_text(json.dumps(stale))  # a server that is gone
    assert main(["search", "a red circle", "-k", "3", "--json"]) == 0
    local = capsys.readouterr()
    assert "answered by featuregen serve" not in local.err
    assert local.err.startswith(LOADING_HERE + "\n")  # why it takes seconds, what is faster

    port = free_port()
    server = _serve(port)
    try:
        url = _wait_until_answering(store.home, server)
        assert url == f"http://127.0.0.1:{port}"
        assert main(["search", "a red circle", "-k", "3", "--json"]) == 0
        served = capsys.readouterr()
        assert served.err == f"(answered by featuregen serve at {url})\n"
        hits = json.loads(served.out)
        assert [h["image_id"] for h in hits] == [h["image_id"] for h in json.loads(local.out)]
        assert main(["search", "circle", "--category", "nowhere"]) == 2  # checked here
        assert capsys.readouterr().err.startswith("error: unknown category 'nowhere'")
    finally:
        server.send_signal(signal.SIGTERM)  # kill, systemd, scripts/screenshot_page.py
        server.wait(timeout=60)
    assert not paths.serve_file(store.home).exists()  # removed as the server stopped


def test_models_list_and_promote_name_the_served_version(store, capsys) -> None:
    register_text_encoder(store, "v2", seed=2)
    assert main(["models", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0:2] for line in listed] == [["v1", store.embedding_model], ["*", "v2"]]
    assert main(["models", "promote", "v1"]) == 0
    assert "aligned_text_encoder v1 is served now" in capsys.readouterr().out
    assert main(["search", "a red circle", "--mode", "image", "-k", "1"]) == 0
    assert "text_encoder_version v1" in capsys.readouterr().out.splitlines()[0]
    assert main(["models", "promote", "v9"]) == 1
    assert "no aligned_text_encoder version 'v9': registered are v1, v2" in capsys.readouterr().err
