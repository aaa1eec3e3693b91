"""Scale run: many links over 20 categories from a loopback server, through Dagster's runs.

    python benchmarks/scale.py                       # 100,000 links, 20 categories, downloads
    python benchmarks/scale.py --links 20000 --embed-category 1

A server process on 127.0.0.1 answers every `/c<k>/<i>.jpg` with a distinct 32×32 JPEG drawn
on request. Each category's link file gets links/20 links; one `featuregen run`-style run per
partition (`run_category`, select `raw_images`) downloads them into the image store and
`raw_images`. Then `--embed-category` categories go through `image_embeddings` with the tiny
DINOv2. Reported: links/s and images/s per stage, Dagster's overhead per run (run start to the
first step's start, and run wall time minus step time), peak RSS of this process (client,
Dagster, PostgreSQL client) and of the server, the database's and the store's size.

    python benchmarks/scale.py --asset-page 20 1000  # the UI's asset page, no downloads

`--asset-page`: the asset page of `raw_images` in Dagster's webserver (`dagster-webserver` on
featuregen's definitions and instance) with 20, then 1,000 category partitions, each with a
materialisation of the three category assets (reported without runs, as the sensor's partitions
would have them): the page's HTML and the GraphQL queries it needs for the partition bar and the
history (node and partition health; the latest materialisations): the first request and the
median of `--repeat` more.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import multiprocessing
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # as benchmarks/vector_store.py does

CATEGORIES = 20


class _TinyJpegs(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        from PIL import Image

        seed = hashlib.sha256(self.path.encode()).digest()
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), tuple(seed[:3])).save(buffer, "JPEG", quality=90, comment=seed)
        body = buffer.getvalue()
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _serve(port: multiprocessing.Value, peak_rss: multiprocessing.Value) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TinyJpegs)
    server.daemon_threads = True
    port.value = server.server_address[1]
    server.timeout = 1
    while port.value > 0:
        server.handle_request()
        peak_rss.value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _overheads(instance, run_id: str) -> tuple[float, float]:
    """(run start → first step start, run wall time − summed step time) in seconds."""
    import dagster as dg

    stamps: dict[str, list[float]] = {}
    for record in instance.all_logs(run_id):
        if record.dagster_event:
            stamps.setdefault(record.dagster_event.event_type_value, []).append(record.timestamp)
    started = stamps[dg.DagsterEventType.RUN_START.value][0]
    ended = stamps[dg.DagsterEventType.RUN_SUCCESS.value][0]
    step_start = stamps[dg.DagsterEventType.STEP_START.value]
    step_end = stamps[dg.DagsterEventType.STEP_SUCCESS.value]
    steps = sum(
        end - start for start, end in zip(sorted(step_start), sorted(step_end), strict=True)
    )
    return min(step_start) - started, (ended - started) - steps


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


ASSET_NODE = """
query ($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  id groupName isPartitioned opNames jobNames description kinds
  partitionKeysByDimension { name partitionKeys }
  partitionStats { numMaterialized numMaterializing numFailed numPartitions }
  assetPartitionStatuses { ... on DefaultPartitionStatuses {
    materializedPartitions materializingPartitions failedPartitions unmaterializedPartitions } }
  dependencyKeys { path } dependedByKeys { path } } } }
"""
ASSET_HISTORY = """
query ($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(limit: 100) { runId partition timestamp
    metadataEntries { label } } } } }
"""


def _webserver(dagster_home: str) -> tuple[subprocess.Popen, str]:
    """dagster-webserver on featuregen's definitions and the instance in `dagster_home`."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-m", "featuregen_assets.definitions"]
        + ["-h", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "DAGSTER_HOME": dagster_home},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/server_info", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("dagster-webserver did not start in 5 minutes")


def _page_times(base: str, repeat: int) -> tuple[dict[str, tuple[float, float]], int]:
    """(first, median of the rest) seconds of the asset page's HTML and of each GraphQL query
    it needs, and the materialised partitions the page shows."""
    import httpx

    key = {"key": {"path": ["raw_images"]}}
    requests = {
        "html": lambda client: client.get(f"{base}/assets/raw_images"),
        "node + partition health": lambda client: client.post(
            f"{base}/graphql", json={"query": ASSET_NODE, "variables": key}
        ),
        "latest 100 materialisations": lambda client: client.post(
            f"{base}/graphql", json={"query": ASSET_HISTORY, "variables": key}
        ),
    }
    times: dict[str, tuple[float, float]] = {}
    with httpx.Client(timeout=300) as client:
        for name, request in requests.items():
            samples = []
            for _ in range(repeat + 1):
                t0 = time.perf_counter()
                response = request(client)
                samples.append(time.perf_counter() - t0)
                response.raise_for_status()
            times[name] = (samples[0], statistics.median(samples[1:]))
        node = requests["node + partition health"](client).json()
    assert "errors" not in node, node
    return times, node["data"]["assetNodeOrError"]["partitionStats"]["numMaterialized"]


def asset_page(partition_counts: list[int], repeat: int) -> None:
    """Time the UI's asset page of `raw_images` at each number of category partitions."""
    import dagster as dg

    from featuregen_assets.launch.runs import dagster_instance
    from featuregen_assets.partitions import category_partitions
    from featuregen_assets.settings import Settings

    settings = Settings.from_env()
    instance = dagster_instance(settings)
    process, base = _webserver(os.environ["DAGSTER_HOME"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; load {os.getloadavg()}")
    try:
        have = 0
        for count in sorted(partition_counts):
            new = [f"scale_{k:04d}" for k in range(have, count)]
            instance.add_dynamic_partitions(category_partitions.name, new)
            for category in new:
                for asset in ("raw_images", "image_prompts", "image_embeddings"):
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(asset, partition=category)
                    )
            have = count
            times, shown = _page_times(base, repeat)
            cells = ", ".join(
                f"{name} {first * 1000:.0f} ms first, {rest * 1000:.0f} ms median"
                for name, (first, rest) in times.items()
            )
            first_total = sum(first for first, _ in times.values())
            rest_total = sum(rest for _, rest in times.values())
            print(
                f"{count:,} partitions ({shown:,} shown materialised): {cells};"
                f" page {first_total:.2f} s first, {rest_total:.2f} s median"
            )
    finally:
        process.terminate()
        process.wait(timeout=30)
        instance.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=100_000)
    parser.add_argument("--embed-category", type=int, default=1, help="categories embedded")
    parser.add_argument("--asset-page", type=int, nargs="+", help="time the UI at N partitions")
    parser.add_argument("--repeat", type=int, default=5, help="asset page: samples after the first")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="featuregen-scale-"))
    os.environ.update(
        FEATUREGEN_HOME=str(root / "home"),
        FEATUREGEN_LINKS_DIR=str(root / "links"),
        FEATUREGEN_MODELS="tiny",
        FEATUREGEN_ALLOWED_NETWORKS="127.0.0.1",
    )
    os.environ.pop("FEATUREGEN_DATABASE_URL", None)
    os.environ["DAGSTER_HOME"] = str(root / "home" / "dagster")
    from featuregen_assets.core.store import db

    if args.asset_page:
        asset_page(args.asset_page, args.repeat)
        db.stop_embedded_server(Path(os.environ["FEATUREGEN_HOME"]))
        shutil.rmtree(root, ignore_errors=True)
        return
    from featuregen_assets.launch.runs import dagster_instance, run_category
    from featuregen_assets.settings import Settings

    settings = Settings.from_env()

    port = multiprocessing.Value("i", 0)
    server_rss = multiprocessing.Value("l", 0)
    server = multiprocessing.Process(target=_serve, args=(port, server_rss), daemon=True)
    server.start()
    while port.value == 0:
        time.sleep(0.05)
    per_category = args.links // CATEGORIES
    (root / "links").mkdir()
    categories = [f"scale_{k:02d}" for k in range(CATEGORIES)]
    for k, category in enumerate(categories):
        lines = (f"http://127.0.0.1:{port.value}/c{k}/{i}.jpg\n" for i in range(per_category))
        (root / "links" / f"{category}.txt").write_text("".join(lines))

    instance = dagster_instance(settings)
    download_s, first_step_s, dagster_s = [], [], []
    started = time.perf_counter()
    for category in categories:
        t0 = time.perf_counter()
        result = run_category(
            category, select=["raw_images"], instance=instance, log_level="ERROR", settings=settings
        )
        download_s.append(time.perf_counter() - t0)
        assert result.success, category
        to_first_step, overhead = _overheads(instance, result.run_id)
        first_step_s.append(to_first_step)
        dagster_s.append(overhead)
    downloads_wall = time.perf_counter() - started

    if args.embed_category:
        from featuregen_assets.demo.tiny_models import ensure_tiny_models

        ensure_tiny_models(settings.models_root())  # what the demo and the tests build first
    embed = []
    for category in categories[: args.embed_category]:
        t0 = time.perf_counter()
        result = run_category(
            category,
            select=["image_embeddings"],
            instance=instance,
            log_level="ERROR",
            settings=settings,
        )
        assert result.success, category
        embed.append(time.perf_counter() - t0)

    url = db.database_url(settings.database_url, settings.home)
    with db.connection(url) as conn:
        ok = conn.execute("SELECT count(*) FROM raw_images WHERE status = 'ok'").fetchone()[0]
        sizes = conn.execute(
            "SELECT pg_database_size(current_database()),"
            " pg_total_relation_size('raw_images'), pg_total_relation_size('image_embeddings')"
        ).fetchone()
    port.value = -1
    server.join(timeout=5)

    mb = 1 / 2**20
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.links:,} links")
    print(
        f"downloads: {ok:,} ok of {args.links:,} in {downloads_wall:.0f} s:"
        f" {args.links / downloads_wall:.0f} links/s over {CATEGORIES} runs"
    )
    print(
        f"per run: median {statistics.median(download_s):.1f} s;"
        f" run start → first step {statistics.median(first_step_s):.2f} s (median),"
        f" Dagster outside steps {statistics.median(dagster_s):.2f} s (median)"
    )
    if embed:
        print(
            f"image_embeddings (tiny): {per_category * len(embed) / sum(embed):.0f} images/s"
            f" ({per_category:,} images a run, run wall time)"
        )
    print(
        f"peak RSS: this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
        f" MB, server {server_rss.value / 1024:.0f} MB"
    )
    print(
        f"database {sizes[0] * mb:.0f} MB (raw_images {sizes[1] * mb:.0f} MB,"
        f" image_embeddings {sizes[2] * mb:.0f} MB); image store"
        f" {_du(root / 'home' / 'images') * mb:.0f} MB"
    )
    instance.dispose()
    db.stop_embedded_server(settings.home)


if __name__ == "__main__":
    main()
