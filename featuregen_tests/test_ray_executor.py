"""Model steps on a real local Ray cluster through dagster-ray's executor (FEATUREGEN_EXECUTOR=ray).

Ray's declared GPUs are logical: no GPU is needed. Skipped without the `ray` extra.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import dagster as dg
import pytest

from featuregen_assets.demo.scenes import generate_dataset, write_link_files
from featuregen_assets.demo.server import DemoServer
from featuregen_assets.runs import dagster_instance, run_category
from featuregen_assets.settings import Settings

pytest.importorskip("dagster_ray")
if not os.environ.get("FEATUREGEN_TEST_RAY"):
    pytest.skip(
        "a real Ray cluster takes minutes on 2 CPUs: FEATUREGEN_TEST_RAY=1 runs it",
        allow_module_level=True,
    )
CATEGORIES = ("cafe", "bank")
GPU_STEPS = ("image_prompts", "image_embeddings")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head(request: pytest.FixtureRequest) -> Iterator[str]:
    """A local Ray cluster of this process with 2 CPUs and `request.param` logical GPUs: its
    job-submission (dashboard) address. Shut down with the fixture."""
    import ray

    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's Unix sockets live there
    context = ray.init(
        num_cpus=2,
        num_gpus=request.param,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=_free_port(),
        _temp_dir=temp,
    )
    try:
        yield f"http://{context.dashboard_url}"
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """(start, end) wall time of each GPU step of a run, from its event log."""
    times: dict[str, list[float]] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if (
            event
            and event.step_key in GPU_STEPS
            and event.event_type_value
            in (
                "STEP_START",
                "STEP_SUCCESS",
            )
        ):
            times.setdefault(event.step_key, []).append(record.timestamp)
    return {step: (min(t), max(t)) for step, t in times.items()}


@pytest.mark.parametrize("ray_head", [1, 2], indirect=True)
def test_two_categories_gpu_steps_overlap_only_with_two_declared_gpus(
    fg_env: Path, ray_head: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    scenes = generate_dataset(tmp_path / "site", CATEGORIES, 4, seed=5)
    with DemoServer(tmp_path / "site") as server, dagster_instance(Settings.from_env()) as instance:
        write_link_files(scenes, server.base_url, fg_env.parent / "links")
        for category in CATEGORIES:  # downloads in this process: the GPU steps are the test
            assert run_category(category, select=["raw_images"], instance=instance).success
        instance.event_log_storage.set_concurrency_slots("gpu", 2)  # Ray governs, not the pool
        env = {
            **os.environ,
            "FEATUREGEN_EXECUTOR": "ray",
            "RAY_ADDRESS": ray_head,
            "PYTHONPATH": str(Path(__file__).parents[1]),  # Ray's steps import this checkout
        }
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "featuregen_assets.cli", "run", "--category", category]
                + ["--select", *GPU_STEPS],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for category in CATEGORIES
        ]
        outputs = [run.communicate(timeout=600)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        run_ids = [output.split("run ")[-1].split(":")[0] for output in outputs]
        intervals = [
            interval
            for run_id in run_ids
            for interval in _step_intervals(instance, run_id).values()
        ]
        in_ray = {
            (run_id, record.step_key)
            for run_id in run_ids
            for record in instance.all_logs(
                run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTING
            )
            if "in Ray job" in record.user_message
        }
    assert len(intervals) == 4  # the two GPU steps of each run
    assert {(run_id, step) for run_id in run_ids for step in GPU_STEPS} <= in_ray
    intervals.sort()
    overlaps = any(later[0] < earlier[1] for earlier, later in pairwise(intervals))
    assert overlaps == (request.node.callspec.params["ray_head"] == 2), intervals
