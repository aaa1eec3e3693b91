"""What keeping Dagster's instance in PostgreSQL costs `featuregen run`: the same category
pipeline against a PostgreSQL instance (featuregen's dagster.yaml) and a SQLite one.

    python benchmarks/instance_storage.py            # 1 category of 16 images, 3 reruns

Each storage gets its own feature database on one embedded server and its own DAGSTER_HOME, so
both do the same work: a first run (download, caption, embed with the tiny models), then
``--reruns`` runs of the same partition, which find everything stored and are mostly Dagster's
own overhead (run and step events, partition and pool bookkeeping). Wall time per run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # as benchmarks/vector_store.py does

import dagster as dg  # noqa: E402
import yaml  # noqa: E402

from featuregen_assets.core.store import db  # noqa: E402
from featuregen_assets.demo.scenes import generate_dataset, write_link_files  # noqa: E402
from featuregen_assets.demo.server import DemoServer  # noqa: E402
from featuregen_assets.launch import instance_config  # noqa: E402
from featuregen_assets.launch.runs import prepare_dagster_home, run_category  # noqa: E402
from featuregen_assets.settings import Settings  # noqa: E402

CATEGORY = "cafe"


def _timed_runs(reruns: int) -> list[float]:
    times = []
    with dg.DagsterInstance.get() as instance:
        for _ in range(1 + reruns):
            started = time.perf_counter()
            result = run_category(CATEGORY, instance=instance, log_level="WARNING")
            times.append(time.perf_counter() - started)
            assert result.success, result.run_id
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--reruns", type=int, default=3)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="featuregen-instance-bench-"))
    os.environ.update(
        FEATUREGEN_HOME=str(root / "home"),
        FEATUREGEN_LINKS_DIR=str(root / "links"),
        FEATUREGEN_MODELS="tiny",
        FEATUREGEN_ALLOWED_NETWORKS="127.0.0.1",
    )
    home = Path(os.environ["FEATUREGEN_HOME"])
    admin = db.embedded_server_url(db.embedded_pgdata(home))
    scenes = generate_dataset(root / "site", [CATEGORY], args.images, seed=0)
    results = {}
    with DemoServer(root / "site") as server:
        write_link_files(scenes, server.base_url, root / "links")
        for storage in ("sqlite", "postgres"):
            os.environ["FEATUREGEN_DATABASE_URL"] = db.ensure_database(admin, f"bench_{storage}")
            os.environ["DAGSTER_HOME"] = str(root / f"dagster_{storage}")
            if storage == "sqlite":  # one's own dagster.yaml: featuregen's, less its storage
                dagster_home = Path(os.environ["DAGSTER_HOME"])
                dagster_home.mkdir()
                config = yaml.safe_load(instance_config.render("postgresql://x@/y"))
                del config["storage"]
                (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
            prepare_dagster_home(Settings.from_env())
            results[storage] = _timed_runs(args.reruns)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{args.images} images of one category, tiny models; wall seconds per run")
    for storage, times in results.items():
        rerun = statistics.median(times[1:])
        print(f"{storage:>8}: first run {times[0]:6.2f}  rerun (median) {rerun:6.2f}")
    first = results["postgres"][0] / results["sqlite"][0]
    rerun = statistics.median(results["postgres"][1:]) / statistics.median(results["sqlite"][1:])
    print(f"postgres ÷ sqlite: first run {first:.2f}x, rerun {rerun:.2f}x")
    db.stop_embedded_server(home)


if __name__ == "__main__":
    main()
