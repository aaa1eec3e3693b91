import hashlib
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from featuregen_assets.core.ingest.store_check import STORE_MARKER
from featuregen_assets.core.store import db
from featuregen_assets.settings import Settings
from featuregen_tests.servers import LoopbackServer, jpeg_bytes, timed

LINKS = 1000


def _ok_rows() -> int:
    with db.connection(Settings.from_env().database_url) as conn:
        return conn.execute("SELECT count(*) FROM raw_images WHERE status = 'ok'").fetchone()[0]


def _slow_image(body: bytes, delay_s: list[float]):
    def handle(h: BaseHTTPRequestHandler) -> None:
        time.sleep(delay_s[0])
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return handle


def _run_cli(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "featuregen_assets.cli",
            "run",
            "--category",
            "big",
            "--select",
            "raw_images",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def test_sigkill_mid_download_then_rerun_stores_each_link_once(fg_env: Path) -> None:
    delay = [0.05]
    with LoopbackServer() as server:
        urls = [
            server.route(
                f"/img/{i}.jpg",
                _slow_image(jpeg_bytes(16 + i % 32, 16 + i // 32), delay),
            )
            for i in range(LINKS)
        ]
        links = Path(os.environ["FEATUREGEN_LINKS_DIR"]) / "big.txt"
        links.write_text("".join(f"{url}\n" for url in urls))
        env = {**os.environ, "FEATUREGEN_DOWNLOAD_CONCURRENCY": "8"}

        first = _run_cli(env)
        deadline = time.monotonic() + 120
        while _ok_rows() < 100:
            assert first.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        interrupted = _ok_rows()
        assert 100 <= interrupted < LINKS

        delay[0] = 0.0
        second = _run_cli(env)
        assert second.wait(timeout=300) == 0

    with db.connection(Settings.from_env().database_url) as conn:
        rows = conn.execute("SELECT url, status, image_id, path FROM raw_images").fetchall()
    assert len(rows) == LINKS
    assert {status for _, status, _, _ in rows} == {"ok"}
    assert len({url for url, *_ in rows}) == LINKS
    store = fg_env / "images"
    files = [p for p in store.rglob("*") if p.is_file() and p.name != STORE_MARKER]
    assert len(files) == LINKS
    for path in files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem
    assert {Path(path) for *_, path in rows} == set(files)


def test_sigterm_keeps_every_link_finished_two_seconds_before(fg_env: Path) -> None:
    finished: dict[str, float] = {}
    links = 300
    with LoopbackServer() as server:
        urls = [
            server.route(f"/img/{i}.jpg", timed(jpeg_bytes(16 + i % 32, 16), 0.1, finished))
            for i in range(links)
        ]
        (Path(os.environ["FEATUREGEN_LINKS_DIR"]) / "big.txt").write_text(
            "".join(f"{url}\n" for url in urls)
        )
        run = _run_cli({**os.environ, "FEATUREGEN_DOWNLOAD_CONCURRENCY": "4"})
        deadline = time.monotonic() + 120
        while len(finished) < links // 2:
            assert run.poll() is None, "the run ended before it could be stopped"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        signalled = time.monotonic()
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        settled = {path for path, at in finished.items() if at < signalled - 2}

    with db.connection(Settings.from_env().database_url) as conn:
        stored = conn.execute("SELECT url FROM raw_images WHERE status = 'ok'").fetchall()
    stored_paths = {url.removeprefix(server.url("")) for (url,) in stored}
    assert len(settled) > 50
    assert settled <= stored_paths
