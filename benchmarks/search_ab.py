"""Two checkouts' search services over one kept store, their requests interleaved: filtered
hybrid against the filtered text (image-mode) query, as new queries and as category chips.

    python benchmarks/search_ab.py --keep /tmp/sb100k --before /work/wt-main \\
        --hybrid-weights image=0,caption=0.5,keyword=1 --requests 60

On a machine shared with other work, two runs of `search.py` one after the other see
different loads; here each request of one checkout is followed by the same request of the
other (which goes first alternates), so both see the same load. ``--keep`` is a store that
`search.py --keep` filled; each checkout's app runs as `search.py --serve` from that
checkout (its own code), over one embedded PostgreSQL. Each case has its own queries, none
asked before: a new query is one filtered request; a chip is the same query unfiltered,
then (timed) filtered, whose page keeps the query's facets. Prints each checkout's p50 per
case, hybrid's p50 ÷ the text query's, its in-app medians, and the median of the paired
after ÷ before times.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

# Replace the script's directory (first on the path): vector_store.py would shadow `pgvector`.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.search import K, bench_server, new_phrases, wait_for  # noqa: E402
from benchmarks.vector_store import machine  # noqa: E402
from featuregen_assets.core.store import db  # noqa: E402

CASES = ("new hybrid", "new image", "chip hybrid", "chip image")
WARM_UP = 3


def serve(tree: Path, url: str, home: Path, weights: str) -> tuple[subprocess.Popen, str]:
    """``tree``'s app over ``url`` in a child process: (the process, its base URL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tree / "benchmarks" / "search.py"
    child = subprocess.Popen(
        [sys.executable, str(script), "--serve", url, str(home), str(port), weights],
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree)),
    )
    return child, f"http://127.0.0.1:{port}"


def measure(clients: dict[str, httpx.Client], category: str, requests: int, seed: int):
    """{(checkout, case): [(ms, in-app timings)]}, requests interleaved between checkouts."""
    rng = np.random.default_rng(seed)
    texts = new_phrases(rng, len(CASES) * (requests + WARM_UP), set())
    queries = {case: texts[i :: len(CASES)] for i, case in enumerate(CASES)}
    found: dict[tuple[str, str], list] = {(n, c): [] for n in clients for c in CASES}

    def get(client: httpx.Client, **params) -> tuple[float, dict]:
        start = time.perf_counter()
        response = client.get("/api/search", params={"k": K, **params})
        assert response.status_code == 200, response.text
        return (time.perf_counter() - start) * 1000, response.json()["timing_ms"]

    names = list(clients)
    for i in range(requests + WARM_UP):
        for case in CASES:
            kind, mode = case.split()
            for name in names if i % 2 == 0 else names[::-1]:
                text = queries[case][i]
                if kind == "chip":
                    get(clients[name], q=text, mode=mode)
                ms, parts = get(clients[name], q=text, mode=mode, category=category)
                if i >= WARM_UP:
                    found[(name, case)].append((ms, parts))
    return found


def report(found, args, load: tuple[str, str]) -> None:
    print(f"\n{args.requests} requests per case and checkout, k = {K}; hybrid's weights:")
    print(f"{args.hybrid_weights or 'built-in'}; category {args.category}; {machine()}")
    print(f"load average (1, 5, 15 min) at the start: {load[0]}; at the end: {load[1]}\n")
    print("| checkout | queries | hybrid p50 ms | text p50 ms | **hybrid ÷ text** |")
    print("| --- | --- | ---: | ---: | ---: |")
    p50 = {key: float(np.median([ms for ms, _ in rows])) for key, rows in found.items()}
    for name in ("before", "after"):
        for kind in ("new", "chip"):
            hybrid, text = p50[(name, f"{kind} hybrid")], p50[(name, f"{kind} image")]
            print(f"| {name} | {kind} | {hybrid:.1f} | {text:.1f} | **{hybrid / text:.2f}** |")
    print(
        "\nhybrid in the app, medians (encode / vector / keyword / total ms), and after ÷ before:"
    )
    for kind in ("new", "chip"):
        for name in ("before", "after"):
            rows = [parts for _, parts in found[(name, f"{kind} hybrid")]]
            inside = " / ".join(
                f"{np.median([r[p] for r in rows]):.1f}"
                for p in ("encode", "vector", "keyword", "total")
            )
            print(f"- {kind}, {name}: {inside}")
        paired = [
            a / b
            for (a, _), (b, _) in zip(
                found[("after", f"{kind} hybrid")], found[("before", f"{kind} hybrid")], strict=True
            )
        ]
        print(f"- {kind}: after ÷ before, paired median {np.median(paired):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, required=True, help="a store search.py filled")
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--requests", type=int, default=60, help="timed requests per case")
    parser.add_argument("--hybrid-weights", default="", metavar="LIST=W,...")
    parser.add_argument("--category", default=None, help="default: the largest")
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    if not (args.keep / "filled").exists():
        raise SystemExit(f"{args.keep} holds no filled store: run search.py --keep first")

    server = bench_server(args.keep / "pg", "stop")
    url = db.ensure_database(server.get_uri(), "bench")
    if args.category is None:
        with db.connection(url) as conn:
            (args.category,) = conn.execute(
                "SELECT category FROM raw_images GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
            ).fetchone()
    children, clients = {}, {}
    try:
        for name, tree in (("before", args.before), ("after", args.after)):
            children[name], base = serve(tree.resolve(), url, args.keep, args.hybrid_weights)
            clients[name] = httpx.Client(base_url=base, timeout=60)
        for name in clients:
            wait_for(clients[name], children[name])
        start_load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        found = measure(clients, args.category, args.requests, args.seed)
        end_load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    finally:
        for child in children.values():
            child.kill()
            child.wait()
    report(found, args, (start_load, end_load))


if __name__ == "__main__":
    main()
