import hashlib
import os
import signal
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from featuregen_assets.core.ingest.store_check import STORE_MARKER
from featuregen_assets.core.store import db
from featuregen_assets.core.text.sentences import BUNDLED, SentenceModel
from featuregen_assets.settings import Settings
from featuregen_tests.killed_runs import (
    killed_after_chunks,
    latest_metadata,
    signal_when,
    start_run,
    store_downloaded,
)
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

        first = start_run(env, "raw_images", quiet=False)
        signal_when(first, lambda: _ok_rows() >= 100, within_s=120, poll_s=0.1)
        first.wait()
        interrupted = _ok_rows()
        assert 100 <= interrupted < LINKS

        delay[0] = 0.0
        assert start_run(env, "raw_images", quiet=False).wait(timeout=300) == 0

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
        run = start_run(
            {**os.environ, "FEATUREGEN_DOWNLOAD_CONCURRENCY": "4"}, "raw_images", quiet=False
        )
        signalled = signal_when(
            run, lambda: len(finished) >= links // 2, signal.SIGTERM, within_s=120
        )
        run.wait(timeout=60)
        settled = {path for path, at in finished.items() if at < signalled - 2}

    with db.connection(Settings.from_env().database_url) as conn:
        stored = conn.execute("SELECT url FROM raw_images WHERE status = 'ok'").fetchall()
    stored_paths = {url.removeprefix(server.url("")) for (url,) in stored}
    assert len(settled) > 50
    assert settled <= stored_paths


TEXTS = 400


def test_sigkill_mid_text_vectors_then_rerun_resumes_them(fg_env: Path) -> None:
    """prompt_embeddings keeps what a killed run finished, as the image model steps do."""
    rows, texts = [], []
    for i in range(TEXTS // 2):
        image_id = hashlib.sha256(f"image {i}".encode()).hexdigest()
        rows.append(("big", f"http://127.0.0.1/{i}.jpg", "ok", image_id, f"/nowhere/{i}.jpg"))
        texts.append((image_id, "link-file:big", "link_caption", f"a red circle number {i}"))
        texts.append((image_id, "tiny/qwen2vl@0", "generated", f"random words {i}"))
    store_downloaded(fg_env.parent / "links", rows)
    with db.connection(Settings.from_env().database_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO image_prompts (image_id, model, source, prompt) VALUES (%s, %s, %s, %s)",
            texts,
        )
    env = {
        **os.environ,
        "FEATUREGEN_CHECKPOINT_EVERY_S": "0",
        "FEATUREGEN_BATCH_SIZE": "1",
    }

    _, directory, killed_with = killed_after_chunks(
        env, "prompt_embeddings", fg_env, 10, ["text_key", "embedding"]
    )
    assert 10 <= len(killed_with) < TEXTS

    again = start_run({**env, "FEATUREGEN_BATCH_SIZE": "64"}, "prompt_embeddings")
    assert again.wait(timeout=300) == 0
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
    metadata = latest_metadata("prompt_embeddings")
    assert metadata["resumed"].value == len(killed_with)
    assert metadata["embedded"].value == TEXTS
    assert not list(directory.glob("*.rows")), "the stored run's checkpoint outlived it"
    # resumed and computed alike, each stored vector is its own text's
    fresh = SentenceModel(BUNDLED).encode([text for *_, text in texts])
    for (image_id, _, source, _), expected in zip(texts, fresh, strict=True):
        assert float(vectors[image_id + source].to_numpy() @ expected) > 0.999
