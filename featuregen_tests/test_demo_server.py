"""The demo's loopback server: byte-exact files, broken links, keep-alive and concurrency."""

from __future__ import annotations

import http.client
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from featuregen_assets.demo.server import HTML_BODY, DemoServer


@pytest.fixture()
def served(tmp_path: Path):
    (tmp_path / "images").mkdir()
    files = {f"images/img_{k}.jpg": os.urandom(20_000 + 997 * k) for k in range(8)}
    files["images/pic.png"] = os.urandom(3000)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with DemoServer(tmp_path) as server:
        yield server, files


def test_serves_files_byte_exact_with_their_type(served) -> None:
    server, files = served
    with httpx.Client(base_url=server.base_url) as client:
        for name, data in files.items():
            response = client.get("/" + name)
            assert response.status_code == 200
            assert response.content == data
            assert response.headers["content-length"] == str(len(data))
            expected = "image/png" if name.endswith(".png") else "image/jpeg"
            assert response.headers["content-type"] == expected


def test_missing_and_unknown_paths_are_404_and_no_listings(served) -> None:
    server, _ = served
    with httpx.Client(base_url=server.base_url) as client:
        assert client.get("/missing/a.jpg").status_code == 404
        assert client.head("/missing/a.jpg").status_code == 404
        assert client.get("/images/nope.jpg").status_code == 404
        assert client.get("/images/").status_code == 404


def test_html_behind_an_image_url(served) -> None:
    server, _ = served
    response = httpx.get(server.base_url + "/html/photo.jpg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == HTML_BODY and response.content.startswith(b"<!doctype html>")
    head = httpx.head(server.base_url + "/html/photo.jpg")
    assert head.headers["content-length"] == str(len(HTML_BODY)) and head.content == b""


def test_keep_alive_serves_several_requests_on_one_connection(served) -> None:
    server, files = served
    host, port = server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for name in ["images/img_0.jpg", "html/x.jpg", "images/img_1.jpg"]:
            conn.request("GET", "/" + name)
            response = conn.getresponse()
            assert response.status == 200 and response.version == 11
            body = response.read()
            assert body == files.get(name, HTML_BODY)
            assert conn.sock is not None  # the server kept the connection open
    finally:
        conn.close()


def test_concurrent_downloads_are_all_exact(served) -> None:
    server, files = served
    names = list(files) * 25
    limits = httpx.Limits(max_connections=16)
    with httpx.Client(base_url=server.base_url, limits=limits) as client:

        def fetch(name: str) -> bool:
            return client.get("/" + name).content == files[name]

        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(fetch, names))


def test_base_url_only_while_running_and_stop_frees_the_port(tmp_path: Path) -> None:
    server = DemoServer(tmp_path)
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    port = int(server.base_url.rsplit(":", 1)[1])
    server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
