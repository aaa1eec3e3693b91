"""Search service under concurrent clients: throughput and latency of `featuregen serve`'s app
with 1, 16 and 50 clients, each level's throughput as a ratio to one client's in the same run.

    python benchmarks/serve_load.py --keep /tmp/serve-bench          # fill once, reuse after
    python benchmarks/serve_load.py --keep /tmp/serve-bench --code /tmp/old-checkout
    python benchmarks/serve_load.py --n 20000 --seconds 20 --clients 1 4 16 50
    python benchmarks/serve_load.py --keep /tmp/serve-bench --server-cpus 0-1  # 2 of more cores

The store is `benchmarks/search.py`'s (N clustered 768-d vectors with prompts; the text
encoder is the clip-vit-base-patch32 text tower architecture with random weights, so a query
costs what the real one costs on this CPU). The app runs under uvicorn in a child process
configured as `featuregen serve` configures it (MiniLM for caption search, the int8 query
encoders as ONNX Runtime graphs where the code has them, one thread per encoding and
request); with ``--code DIR`` the child imports featuregen from DIR instead (another checkout:
the before figure in the same run). This process drives it with closed-loop clients (asyncio
+ httpx, keep-alive, each sends its next text query when the last is answered) for
``--seconds`` per level after a warm-up, and prints, per level: answered requests per second,
p50 / p99 latency, 503s (backpressure), throughput ÷ one client's and the CPU cores the
server, PostgreSQL and this load generator used. The load generator and the server share the
CPUs: what is printed is the whole machine's throughput, and the last line says what all the
cores would give at the first level's CPU per answer (more clients often cost a little less).
With ``--server-cpus`` the server and PostgreSQL run on those CPUs only and the load
generator on the others (a machine with more cores than the server is meant to get: the
server's scaling on its own cores, the load generator's CPU out of it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

# The checkout to import (the server child gets --code's; see main).
sys.path[0] = os.environ.get("SERVE_LOAD_CODE") or str(Path(__file__).resolve().parents[1])

from benchmarks.search import bench_server, embedder, fill, phrase, stored  # noqa: E402
from benchmarks.vector_store import machine  # noqa: E402
from featuregen_assets.core.store import db  # noqa: E402


def serve(url: str, home: Path, port: int, threads: int) -> None:
    """The child process: the app as `featuregen serve` builds it (``threads`` search threads
    if > 0), until killed."""
    import dataclasses

    import uvicorn

    from featuregen_assets.core.text.sentences import BUNDLED
    from featuregen_assets.serve.app import ServeConfig, create_app

    fields = {field.name for field in dataclasses.fields(ServeConfig)}
    config = ServeConfig(
        database_url=url,
        images_dir=home / "images",
        thumbs_dir=home / "thumbs",
        embedder_factory=lambda: embedder(home / "dinov2-base"),
        sentence_encoder=BUNDLED,
        # the query encoders' ONNX graphs where the code has them (older checkouts: torch)
        **({"query_graphs_dir": home / "query-graphs"} if "query_graphs_dir" in fields else {}),
        **({"search_threads": threads} if threads > 0 else {}),
    )
    uvicorn.run(create_app(config), host="127.0.0.1", port=port, log_level="warning")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (its threads included; 0 once it
    has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_pids(data_dir: Path) -> list[int]:
    """The embedded PostgreSQL's processes: its postmaster (`postmaster.pid`) and children."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def cpu_by_part(server_pid: int, data_dir: Path) -> dict[str, float]:
    """CPU seconds so far of the server, PostgreSQL (this moment's processes) and this load
    generator."""
    return {
        "server": cpu_seconds(server_pid),
        "postgres": sum(cpu_seconds(pid) for pid in postgres_pids(data_dir)),
        "clients": time.process_time(),
    }


async def level(
    base: str, clients: int, seconds: float, seed: int, pid: int, data_dir: Path
) -> dict:
    """Run ``clients`` closed-loop clients for ``seconds`` (after 2 s of warm-up)."""
    rng = np.random.default_rng(seed)
    texts = [phrase(rng) for _ in range(512)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        warm_until, stop_at = start + 2.0, start + 2.0 + seconds

        async def one(index: int) -> None:
            n = index
            while (now := time.perf_counter()) < stop_at:
                params = {"q": texts[n % len(texts)], "k": 20}
                n += clients
                try:
                    status = (await client.get("/api/search", params=params)).status_code
                except httpx.TransportError:
                    status = 0  # the connection failed: counted, not answered
                done = time.perf_counter()
                if now >= warm_until:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append((done - now) * 1000)

        async def cpu_while_measured() -> dict[str, float]:
            await asyncio.sleep(warm_until - time.perf_counter())
            before = cpu_by_part(pid, data_dir)
            await asyncio.sleep(stop_at - time.perf_counter())
            after = cpu_by_part(pid, data_dir)
            return {part: (after[part] - before[part]) / seconds for part in after}

        *_, cores = await asyncio.gather(*(one(i) for i in range(clients)), cpu_while_measured())
    return {
        "clients": clients,
        "per_s": len(latencies) / seconds,
        "p50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "p99": float(np.percentile(latencies, 99)) if latencies else float("nan"),
        "statuses": statuses,
        "cores": cores,
    }


def cpu_list(text: str) -> set[int]:
    """--server-cpus: CPU numbers and ranges, "0-1" or "0,2"."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def pin(server_cpus: set[int] | None, data_dir: Path) -> set[int]:
    """Pin PostgreSQL (its running processes, and so the backends it forks) to
    ``server_cpus`` and this load generator to the other CPUs; the CPUs the server gets
    (all this process may use, unpinned)."""
    usable = os.sched_getaffinity(0)
    if not server_cpus:
        return usable
    if not server_cpus < usable:
        raise SystemExit(f"--server-cpus must be some of {sorted(usable)}, not all")
    for pid in postgres_pids(data_dir):
        os.sched_setaffinity(pid, server_cpus)
    os.sched_setaffinity(0, usable - server_cpus)
    return server_cpus


def wait_for(base: str, child: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"the server exited with {child.returncode}")
        try:
            httpx.get(f"{base}/api/search", params={"q": "warm"}, timeout=60)
            return
        except httpx.TransportError:
            time.sleep(0.3)
    raise SystemExit("the server did not start")


def main() -> None:
    # No "Loading weights" bar from the server child (this process loads no model, and may
    # import an older checkout's featuregen: `--code`).
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured per level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 50])
    parser.add_argument("--keep", type=Path, help="as benchmarks/search.py --keep")
    parser.add_argument("--code", type=Path, help="the checkout the server imports")
    parser.add_argument("--threads", type=int, default=0, help="search threads (0: the default)")
    parser.add_argument(
        "--server-cpus",
        type=cpu_list,
        help="pin the server and PostgreSQL to these CPUs (e.g. 0-1), the load generator to"
        " the others: the server's scaling on those cores alone",
    )
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], Path(args.serve[1]), int(args.serve[2]), int(args.serve[3]))
        return

    work = args.keep or Path(tempfile.mkdtemp(prefix="featuregen-serve-load-"))
    work.mkdir(parents=True, exist_ok=True)
    server = bench_server(work / "pg", "stop")
    url = db.ensure_database(server.get_uri(), "bench")
    filled, shape = work / "filled", f"{args.n} {args.dim} {args.seed}"
    if filled.exists() and filled.read_text() == shape:
        stored(url)
    else:
        fill(url, work, args.n, args.dim, args.seed)
        filled.write_text(shape)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = str((args.code or Path(__file__).resolve().parents[1]).resolve())
    env = {**os.environ, "SERVE_LOAD_CODE": code, "PYTHONPATH": code}
    server_cpus = pin(args.server_cpus, work / "pg")
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", url, str(work), str(port), str(args.threads)],
        env=env,
        cwd=code,
        preexec_fn=lambda: os.sched_setaffinity(0, server_cpus),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base, child)
        rows = [
            asyncio.run(level(base, c, args.seconds, args.seed + c, child.pid, work / "pg"))
            for c in args.clients
        ]
    finally:
        child.kill()
        child.wait()
    load = os.getloadavg()
    print(
        f"\nN = {args.n:,}, text queries, k = 20, {args.seconds:g} s per level; server code {code}"
    )
    print(
        f"{machine()}; load average after the run {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n"
    )
    print(
        "| clients | answered / s | ÷ one client | p50 ms | p99 ms | CPU cores: server /"
        " PostgreSQL / load generator / all | statuses |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    one = rows[0]
    for row in rows:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(row["statuses"].items()))
        cores = row["cores"]
        parts = " / ".join(f"{cores[part]:.2f}" for part in ("server", "postgres", "clients"))
        print(
            f"| {row['clients']} | {row['per_s']:.1f} | {row['per_s'] / one['per_s']:.2f} |"
            f" {row['p50']:.0f} | {row['p99']:.0f} | {parts} / {sum(cores.values()):.2f} |"
            f" {codes} |"
        )
    if args.server_cpus:
        busy, cpus = one["cores"]["server"] + one["cores"]["postgres"], len(server_cpus)
        print(
            f"\nServer and PostgreSQL on CPUs {sorted(server_cpus)}, the load generator on"
            f" {sorted(os.sched_getaffinity(0))}. {one['clients']} client(s) kept {busy:.2f} of"
            f" the server's {cpus} cores busy: at the same CPU per answer, all {cpus} would give"
            f" {cpus / busy:.2f}× its throughput."
        )
        return
    busy, cpus = sum(one["cores"].values()), os.cpu_count() or 1
    print(
        f"\n{one['clients']} client(s) kept {busy:.2f} of the machine's {cpus} cores busy: at the"
        f" same CPU per answer, all {cpus} would give {cpus / busy:.2f}× its throughput."
    )


if __name__ == "__main__":
    main()
