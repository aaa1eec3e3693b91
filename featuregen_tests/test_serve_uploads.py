"""Image uploads cost bounded memory: the server runs in a child process and its resident
memory is read from /proc while four large uploads arrive at once."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from featuregen_tests.app_server import free_port
from featuregen_tests.search_store import search_store_in_new_database

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import sys
from pathlib import Path
import uvicorn
from featuregen_assets.serve.app import ServeConfig, create_app
from featuregen_tests.search_store import tiny_embedder
url, home, models, port = sys.argv[1:]
config = ServeConfig(
    database_url=url, images_dir=Path(home) / "images", thumbs_dir=Path(home) / "thumbs",
    embedder_factory=lambda: tiny_embedder(Path(models)),
)
uvicorn.run(create_app(config), host="127.0.0.1", port=int(port), log_level="warning")
"""
pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux")


@pytest.fixture(scope="module")
def server(tmp_path_factory, pg_admin_url: str, tiny_models_dir):
    """The app in a child process: (base URL, pid)."""
    home = tmp_path_factory.mktemp("uploads-home")
    url = search_store_in_new_database(pg_admin_url, "uploads", home, tiny_models_dir).url
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(home), str(tiny_models_dir), str(port)], env=env
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert child.poll() is None and time.monotonic() < deadline, "the server did not start"
        try:
            httpx.get(f"{base}/api/search", params={"q": "warm", "mode": "keyword"})
            break
        except httpx.TransportError:
            time.sleep(0.2)
    yield base, child.pid
    child.kill()
    child.wait()


def _png(side: int) -> bytes:
    """A flat-coloured side × side RGB PNG: a few hundred KB that decode to side² × 3 bytes."""
    out = io.BytesIO()
    Image.new("RGB", (side, side), (90, 140, 200)).save(out, "PNG", optimize=False)
    return out.getvalue()


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _peak_growth_mb(base: str, pid: int, data: bytes, uploads: int) -> tuple[float, list]:
    """How far the server's peak resident memory rose above its resident memory before
    ``uploads`` concurrent uploads of ``data``, and their responses."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again here
    before = _kib(pid, "VmRSS")

    def upload(_: int) -> httpx.Response:
        files = {"file": ("big.png", data, "image/png")}
        return httpx.post(f"{base}/api/search/image", files=files, data={"k": "3"}, timeout=300)

    with ThreadPoolExecutor(uploads) as clients:
        responses = list(clients.map(upload, range(uploads)))
    return (_kib(pid, "VmHWM") - before) / 1024, responses


def test_four_13000_square_uploads_are_refused_before_decoding(server) -> None:
    data = _png(13000)
    assert len(data) < 1_000_000
    growth, responses = _peak_growth_mb(*server, data, uploads=4)
    for response in responses:
        assert response.status_code == 415
        assert response.json()["detail"] == (
            "the file has too many pixels (13000x13000 = 169000000 pixels > 90000000)"
        )
    assert growth < 400, growth


def test_four_large_uploads_within_the_limit_are_decoded_one_at_a_time(server) -> None:
    """8000² decodes to 192 MB: four at once would need over 750 MB."""
    growth, responses = _peak_growth_mb(*server, _png(8000), uploads=4)
    assert [r.status_code for r in responses] == [200] * 4, responses[0].text
    assert growth < 400, growth
