"""The downloader end to end against a real HTTP server on 127.0.0.1 (issue 3's cases).

No test sends traffic beyond loopback: private targets are literal addresses refused before
any connection, and the IDN host is resolved to 127.0.0.1 by a patched resolver.
"""

from __future__ import annotations

import hashlib
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from featuregen_assets.core.ingest import netpolicy
from featuregen_assets.core.ingest.download import (
    DownloadResult,
    DownloadSettings,
    download_links,
)
from featuregen_assets.core.ingest.image_store import ImageStore
from featuregen_assets.core.ingest.links import Link
from featuregen_assets.core.runtime.progress import Progress
from featuregen_assets.settings import Settings
from featuregen_tests.servers import (
    LoopbackServer,
    animated_gif,
    drip,
    encode,
    exif_rotated_jpeg,
    jpeg_bytes,
    noisy_jpeg,
    png_bomb,
    redirect,
    sequence,
    static,
    unsized,
)

SETTINGS = DownloadSettings(
    concurrency=8,
    per_host=8,
    connect_timeout=2.0,
    read_timeout=2.0,
    total_timeout=5.0,
    retries=2,
    backoff=0.01,
    allowed_networks=("127.0.0.1/32",),
)


@pytest.fixture(scope="module")
def server():
    with LoopbackServer() as running:
        yield running


@pytest.fixture
def store(tmp_path: Path):
    store = ImageStore(tmp_path / "images")
    yield store
    assert_store_clean(store)


def assert_store_clean(store: ImageStore) -> None:
    """No temporary or partial file; every file is named after the sha256 of its bytes."""
    if not store.root.exists():
        return
    for path in store.root.rglob("*"):
        if path.is_file():
            assert not path.name.startswith(".tmp-"), path
            assert path.stem == hashlib.sha256(path.read_bytes()).hexdigest(), path


def fetch(urls: list[str], store: ImageStore, **overrides) -> dict[str, DownloadResult]:
    settings = DownloadSettings(**{**SETTINGS.__dict__, **overrides})
    results = list(download_links([Link(u) for u in urls], store, settings))
    assert len(results) == len({r.url for r in results})
    return {r.url: r for r in results}


def one(url: str, store: ImageStore, **overrides) -> DownloadResult:
    return fetch([url], store, **overrides)[url]


def test_ok_jpeg_is_stored_with_its_original_bytes(server, store) -> None:
    body = jpeg_bytes(64, 48)
    url = server.route("/ok.jpg", static(body, "application/octet-stream"))
    result = one(url, store)
    assert result.status == "ok", result
    assert (result.format, result.width, result.height) == ("JPEG", 64, 48)
    assert (result.mime, result.bytes) == ("image/jpeg", len(body))
    assert result.image_id == hashlib.sha256(body).hexdigest()
    assert Path(result.path).read_bytes() == body
    assert server.headers_seen["/ok.jpg"]["User-Agent"].startswith("featuregen/")


def test_http_errors_map_to_reasons_without_retrying_4xx(server, store) -> None:
    missing = server.url("/missing.jpg")
    forbidden = server.route("/forbidden.jpg", static(b"no", "text/plain", status=403))
    results = fetch([missing, forbidden], store)
    assert results[missing].status == "http_404"
    assert results[forbidden].status == "http_4xx"
    assert server.hits["/missing.jpg"] == 1 and server.hits["/forbidden.jpg"] == 1


def test_500_then_200_is_retried(server, store) -> None:
    url = server.route(
        "/flaky.jpg", sequence(static(b"oops", "text/plain", status=500), static(jpeg_bytes()))
    )
    assert one(url, store).status == "ok"
    assert server.hits["/flaky.jpg"] == 2


def test_persistent_5xx_gives_up_after_retries(server, store) -> None:
    url = server.route("/down.jpg", static(b"", "text/plain", status=503))
    assert one(url, store).status == "http_5xx"
    assert server.hits["/down.jpg"] == SETTINGS.retries + 1


def test_429_honours_retry_after(server, store) -> None:
    url = server.route(
        "/busy.jpg",
        sequence(
            static(b"", "text/plain", status=429, headers={"Retry-After": "1"}),
            static(jpeg_bytes()),
        ),
    )
    started = time.monotonic()
    assert one(url, store).status == "ok"
    assert time.monotonic() - started >= 0.9
    assert server.hits["/busy.jpg"] == 2


def test_dripping_server_times_out(server, store) -> None:
    body = jpeg_bytes()
    slow = server.route("/drip-slow.jpg", drip(body, pause_s=1.0))
    steady = server.route("/drip-steady.jpg", drip(body, pause_s=0.05))
    results = fetch([slow, steady], store, read_timeout=0.3, total_timeout=1.0)
    assert results[slow].status == "timeout"  # a gap longer than the read timeout
    assert results[steady].status == "timeout"  # every gap short, the whole too long


def test_redirects_are_followed_up_to_the_limit(server, store) -> None:
    server.route("/target.jpg", static(jpeg_bytes()))
    hop = server.route("/hop", redirect("/target.jpg", status=301))
    loop = server.route("/loop", redirect("/loop"))
    results = fetch([hop, loop], store)
    assert results[hop].status == "ok"
    assert results[loop].status == "too_many_redirects"
    assert server.hits["/loop"] == SETTINGS.max_redirects + 1


@pytest.mark.parametrize(
    ("location", "status"),
    [
        ("http://10.0.0.1/secret.jpg", "blocked_address"),
        ("http://169.254.169.254/latest/meta-data/", "blocked_address"),
        ("http://[::1]/x.jpg", "blocked_address"),
        ("file:///etc/passwd", "bad_url"),
    ],
)
def test_redirect_into_private_network_is_refused(server, store, location, status) -> None:
    url = server.route(f"/to-{status}-{abs(hash(location))}", redirect(location))
    result = one(url, store)
    assert result.status == status, result


def test_loopback_outside_allow_list_is_refused_end_to_end(server, store) -> None:
    server.route("/other-loopback.jpg", static(jpeg_bytes()))
    url = server.url("/other-loopback.jpg", host="127.0.0.2")
    result = one(url, store)
    assert result.status == "blocked_address" and "127.0.0.2" in result.error
    hop = server.route("/to-127-0-0-2", redirect(url))
    assert one(hop, store).status == "blocked_address"
    assert server.hits["/other-loopback.jpg"] == 0


def test_localhost_name_is_checked_after_resolution(server, store) -> None:
    server.route("/by-name.jpg", static(jpeg_bytes()))
    url = server.url("/by-name.jpg", host="localhost")
    assert one(url, store, allowed_networks=()).status == "blocked_address"
    assert server.hits["/by-name.jpg"] == 0


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("html", b"<!doctype html><html><body>hello</body></html>", "not_image"),
        ("empty", b"", "not_image"),
        ("truncated", noisy_jpeg()[:3000], "decode_error"),
        ("bomb", png_bomb(), "too_many_pixels"),
    ],
)
def test_bad_bodies_get_reasons(server, store, name, body, status) -> None:
    url = server.route(f"/bad-{name}.jpg", static(body, "image/jpeg"))
    result = one(url, store)
    assert result.status == status, result
    assert result.image_id is None


def test_over_size_bodies_are_cut_off(server, store) -> None:
    big = jpeg_bytes(400, 400, quality=100) + b"\0" * 200_000
    no_length = server.route("/big-unsized.jpg", unsized(big))
    with_length = server.route("/big-sized.jpg", static(big))
    results = fetch([no_length, with_length], store, max_bytes=50_000)
    assert results[no_length].status == "too_large"
    assert results[with_length].status == "too_large"


@pytest.mark.parametrize(
    ("name", "body", "image_format", "size"),
    [
        ("cmyk", encode(Image.new("CMYK", (40, 30), (0, 60, 90, 10)), "JPEG"), "JPEG", (40, 30)),
        ("16bit", encode(Image.new("I;16", (40, 30), 50_000), "PNG"), "PNG", (40, 30)),
        ("alpha", encode(Image.new("RGBA", (40, 30), (9, 9, 9, 100)), "PNG"), "PNG", (40, 30)),
        ("animated", animated_gif(size=(40, 30)), "GIF", (40, 30)),
        ("rotated", exif_rotated_jpeg(40, 30), "JPEG", (30, 40)),
    ],
)
def test_unusual_images_are_kept(server, store, name, body, image_format, size) -> None:
    url = server.route(f"/unusual-{name}", static(body, "image/whatever"))
    result = one(url, store)
    assert result.status == "ok", result
    assert (result.format, (result.width, result.height)) == (image_format, size)
    assert Path(result.path).read_bytes() == body


def test_idn_host_is_idna_encoded(server, store, monkeypatch) -> None:
    real_resolve = netpolicy.resolve

    async def resolve_test_names(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host.endswith(".test") else await real_resolve(host, port)

    monkeypatch.setattr(netpolicy, "resolve", resolve_test_names)
    server.route("/idn.jpg", static(jpeg_bytes()))
    url = server.url("/idn.jpg", host="bücher.test")
    assert one(url, store).status == "ok"
    assert server.headers_seen["/idn.jpg"]["Host"] == f"xn--bcher-kva.test:{server.port}"


def test_url_with_spaces_is_percent_encoded(server, store) -> None:
    server.route("/with%20space%C3%A9.jpg", static(jpeg_bytes()))
    url = server.url("/with spaceé.jpg")
    result = one(url, store)
    assert result.status == "ok" and result.url == url


def test_non_http_urls_are_bad_urls(store) -> None:
    urls = ["file:///etc/passwd", "ftp://example.com/a.jpg", "data:,x", "javascript:alert(1)", "::"]
    results = fetch(urls, store)
    assert {url: r.status for url, r in results.items()} == dict.fromkeys(urls, "bad_url")


def test_duplicate_url_yields_one_result(server, store) -> None:
    url = server.route("/dup.jpg", static(jpeg_bytes()))
    spaced = server.route("/dup%20b.jpg", static(jpeg_bytes(10, 10)))
    links = [url, url, spaced, spaced.replace("%20", " ")]
    results = list(download_links([Link(u) for u in links], store, SETTINGS))
    assert sorted(r.url for r in results) == sorted([url, spaced])
    assert server.hits["/dup.jpg"] == 1


def test_identical_bytes_are_one_file(server, store) -> None:
    body = jpeg_bytes(33, 33)
    first = server.route("/same-a.jpg", static(body))
    second = server.route("/same-b.jpg", static(body))
    results = fetch([first, second], store)
    assert results[first].image_id == results[second].image_id is not None
    assert len([p for p in store.root.rglob("*") if p.is_file()]) == 1


def test_robots_header_is_honoured(server, store) -> None:
    denied = server.route("/noai.jpg", static(jpeg_bytes(), headers={"X-Robots-Tag": "noimageai"}))
    scoped = server.route(
        "/otherbot.jpg", static(jpeg_bytes(5, 5), headers={"X-Robots-Tag": "otherbot: noai"})
    )
    results = fetch([denied, scoped], store)
    assert results[denied].status == "robots_denied"
    assert results[scoped].status == "ok"
    assert one(denied, store, respect_robots=False).status == "ok"


def test_refused_connection_is_a_connect_error(store) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert one(f"http://127.0.0.1:{port}/x.jpg", store).status == "connect_error"


def test_links_are_pulled_lazily_and_progress_is_reported(server, store) -> None:
    server.route("/lazy.jpg", static(jpeg_bytes(8, 8)))
    pulled = 0

    def links():
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield Link(server.url(f"/lazy.jpg?i={i}"))

    settings = DownloadSettings(**{**SETTINGS.__dict__, "concurrency": 4})
    results = download_links(links(), store, settings)
    first = next(results)
    time.sleep(0.2)
    assert first.status == "ok"
    assert pulled <= 3 * settings.concurrency + 1
    results.close()

    reports: list[Progress] = []
    urls = [Link(server.url(f"/lazy.jpg?j={i}")) for i in range(20)]
    done = list(download_links(urls, store, settings, on_progress=reports.append, total=20))
    assert len(done) == 20
    assert (reports[-1].done, reports[-1].ok, reports[-1].total) == (20, 20, 20)


def test_closing_early_cancels_promptly(server, store) -> None:
    server.route("/fast.jpg", static(jpeg_bytes(4, 4)))
    server.route("/hang.jpg", drip(jpeg_bytes(), pause_s=0.5))
    urls = [server.url("/fast.jpg")] + [server.url(f"/hang.jpg?{i}") for i in range(6)]
    results = download_links([Link(u) for u in urls], store, SETTINGS)
    assert next(results).status == "ok"
    started = time.monotonic()
    results.close()
    assert time.monotonic() - started < 2.0


def test_settings_from_env(monkeypatch) -> None:
    monkeypatch.setenv("FEATUREGEN_ALLOWED_NETWORKS", "127.0.0.1, 10.0.0.0/8")
    monkeypatch.setenv("FEATUREGEN_USER_AGENT", "featuregen-test/1")
    monkeypatch.setenv("FEATUREGEN_DOWNLOAD_CONCURRENCY", "7")
    monkeypatch.setenv("FEATUREGEN_DOWNLOAD_RESPECT_ROBOTS", "false")
    settings = replace(Settings.from_env().download, retries=1)
    assert settings.allowed_networks == ("127.0.0.1", "10.0.0.0/8")
    assert settings.user_agent == "featuregen-test/1"
    assert (settings.concurrency, settings.respect_robots, settings.retries) == (7, False, 1)
