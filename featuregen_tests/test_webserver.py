import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx

from featuregen_tests.app_server import free_port

QUERY = """
{
  assetNodes {
    assetKey { path }
    partitionKeys
    partitionDefinition { name type }
  }
}
"""


def test_webserver_lists_assets_and_category_partitions(fg_env: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("category", ["cafe", "bank"])
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=Path(__file__).parents[1],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=10
                )
                if response.status_code == 200 and response.json()["data"]["assetNodes"]:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "dagster-webserver exited"
            assert time.monotonic() < deadline, "dagster-webserver did not answer in time"
            time.sleep(1)
        nodes = {tuple(n["assetKey"]["path"]): n for n in response.json()["data"]["assetNodes"]}
        assert {("raw_images",), ("image_prompts",), ("image_embeddings",)} <= set(nodes)
        raw = nodes[("raw_images",)]
        assert sorted(raw["partitionKeys"]) == ["bank", "cafe"]
        assert raw["partitionDefinition"]["name"] == "category"
    finally:
        server.terminate()
        server.wait(timeout=30)
