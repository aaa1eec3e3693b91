import hashlib
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import dagster as dg
import numpy as np

from featuregen_assets.core.ingest.store_check import STORE_MARKER
from featuregen_assets.core.store import db
from featuregen_assets.core.text.sentences import BUNDLED, SentenceModel
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


TEXTS = 400


def _run_text_vectors(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "featuregen_assets.cli", "run", "--category", "big"]
        + ["--select", "prompt_embeddings"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _checkpointed_keys(directory: Path) -> set[str]:
    keys: set[str] = set()
    for path in directory.glob("*.rows"):
        with path.open("rb") as f:
            assert np.load(f).tolist() == ["text_key", "embedding"]
            keys.update(np.load(f).tolist())
    return keys


def test_sigkill_mid_text_vectors_then_rerun_resumes_them(fg_env: Path) -> None:
    """prompt_embeddings keeps what a killed run finished, as the image model steps do."""
    rows, texts = [], []
    for i in range(TEXTS // 2):
        image_id = hashlib.sha256(f"image {i}".encode()).hexdigest()
        rows.append(("big", f"http://127.0.0.1/{i}.jpg", "ok", image_id, f"/nowhere/{i}.jpg"))
        texts.append((image_id, "link-file:big", "link_caption", f"a red circle number {i}"))
        texts.append((image_id, "tiny/qwen2vl@0", "generated", f"random words {i}"))
    (fg_env.parent / "links" / "big.txt").write_text("".join(f"{row[1]}\n" for row in rows))
    with db.connection(Settings.from_env().database_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO raw_images (category, url, status, image_id, path)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )
        conn.cursor().executemany(
            "INSERT INTO image_prompts (image_id, model, source, prompt) VALUES (%s, %s, %s, %s)",
            texts,
        )
    env = {
        **os.environ,
        "FEATUREGEN_CHECKPOINT_EVERY_S": "0",
        "FEATUREGEN_BATCH_SIZE": "1",
    }

    first = _run_text_vectors(env)
    checkpoints = fg_env / "checkpoints" / "prompt_embeddings" / "big"
    deadline = time.monotonic() + 180
    while len(list(checkpoints.rglob("*.rows"))) < 10:
        assert first.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    [directory] = {path.parent for path in checkpoints.rglob("*.rows")}
    killed_with = _checkpointed_keys(directory)
    assert 10 <= len(killed_with) < TEXTS

    assert _run_text_vectors({**env, "FEATUREGEN_BATCH_SIZE": "64"}).wait(timeout=300) == 0
    with db.connection(Settings.from_env().database_url) as conn:
        stored = conn.execute(
            "SELECT source, random_weights, count(*) FROM prompt_embeddings GROUP BY 1, 2"
            " ORDER BY 1"
        ).fetchall()
        vectors = dict(
            conn.execute(
                "SELECT e.image_id || e.source, e.embedding FROM prompt_embeddings e"
            ).fetchall()
        )
    assert stored == [("generated", True, TEXTS // 2), ("link_caption", False, TEXTS // 2)]
    with dg.DagsterInstance.get() as instance:
        [record] = instance.fetch_materializations(
            dg.AssetKey("prompt_embeddings"), limit=1
        ).records
    metadata = record.asset_materialization.metadata
    assert metadata["resumed"].value == len(killed_with)
    assert metadata["embedded"].value == TEXTS
    assert not list(directory.glob("*.rows")), "the stored run's checkpoint outlived it"
    # resumed and computed alike, each stored vector is its own text's
    fresh = SentenceModel(BUNDLED).encode([text for *_, text in texts])
    for (image_id, _, source, _), expected in zip(texts, fresh, strict=True):
        assert float(vectors[image_id + source].to_numpy() @ expected) > 0.999
