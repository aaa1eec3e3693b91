"""Model steps on a real local Ray cluster through dagster-ray's executor (FEATUREGEN_EXECUTOR=ray).

One Ray head for the module, started as featuregen starts its own (`core.runtime.ray_head`: free
ports, a directory of its own, so it never joins another Ray cluster on the machine), declaring
2 CPUs and 2 GPUs (logical: no GPU is needed); the one-GPU case holds one of them in a placement
group. The categories' images are downloaded once, in this process; each case runs two other
categories' embedding steps at once, each run launched with a `Settings` object whose values are
in no environment variable (as the CLI's and the demo's are), and reads when each step's process
held its GPU from the runs' event logs. A run not done in `RUN_LIMIT_S` fails its case with the
runs' event logs and Ray's state, its processes and Ray jobs stopped: a hang costs minutes, not
CI's whole budget. One case holds both CPUs until the run says its step waits for resources; a
last one runs a category with no cluster address: on a head the run starts on the machine's own
resources (no GPU here) and stops.

Ray and dagster-ray are the `ray` extra, which scripts/setup.sh installs: without them this
module fails, it does not skip.
"""

import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import psycopg
import pytest

try:
    import dagster_ray  # noqa: F401
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
except ImportError as error:  # fail loudly: CI must run this test
    raise ImportError(
        f"{error}: the real-Ray test needs the ray extra (scripts/setup.sh installs it)"
    ) from error

from featuregen_assets.core.runtime import ray_head
from featuregen_assets.core.store import db, schema
from featuregen_assets.demo.scenes import generate_dataset, write_link_files
from featuregen_assets.demo.server import DemoServer
from featuregen_assets.launch import executors
from featuregen_assets.launch.runs import dagster_instance, reconstructable_pipeline, run_category
from featuregen_assets.resources.models import GPU_POOL
from featuregen_assets.settings import Settings

CATEGORIES = {1: ("cafe", "bank"), 2: ("shop", "fight")}  # by free GPUs: each case its own
GPU_STEP = "image_embeddings"
TINY_DIM = 384  # the tiny DINOv2's hidden size: CLS ⊕ mean of patches gives twice it
RUN_LIMIT_S = 300  # a hang guard, not a speed bound: a case's runs take ~50 s at load 10
CASE_TAG = "featuregen-test/case"  # on each run: a case finds its runs by it


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[dict[str, Any]]:
    """A local Ray head with 2 CPUs and 2 logical GPUs on free ports, this process its driver
    (for placement groups): where it is (`webui_url`, `gcs_address`, `session_dir`). Stopped
    with the module, failed or not.

    Token authentication as the Ray executor sets it up for its head (on when ~/.ray/auth_token
    exists): RAY_AUTH_MODE=token in this process, which the spawned runs and `ray` commands
    inherit, until the module ends."""
    with mock.patch.dict(os.environ):
        os.environ.pop("RAY_ADDRESS", None)
        executors.authenticate_as_ray_start_does()
        head = ray_head.start_local_head(num_cpus=2, num_gpus=2)
        try:
            ray.init(address=head.gcs_address)
            yield {
                "webui_url": head.dashboard_url.removeprefix("http://"),
                "gcs_address": head.gcs_address,
                "session_dir": str(Path(head.temp_dir) / "session_latest"),
            }
        finally:
            ray.shutdown()
            head.stop()


@pytest.fixture
def free_gpus(request: pytest.FixtureRequest, ray_cluster: dict[str, Any]) -> Iterator[int]:
    """`request.param` GPUs free for the steps: with 1, a placement group holds the other."""
    held = None
    if request.param == 1:
        held = placement_group([{"GPU": 1}])
        ray.get(held.ready(), timeout=120)
    try:
        yield request.param
    finally:
        if held is not None:
            remove_placement_group(held)


@pytest.fixture(scope="module")
def launch_settings(
    tmp_path_factory: pytest.TempPathFactory,
    pg_admin_url: str,
    tiny_models_dir: Path,
    ray_cluster: dict[str, Any],
) -> Iterator[Settings]:
    """Settings for the Ray runs, with every category's images downloaded. Only the home, the
    database and Dagster's home are environment variables: the tiny models, their directory,
    the links, the executor and the pooling are in the `Settings` object alone."""
    root = tmp_path_factory.mktemp("ray")
    name = f"test_ray_{uuid.uuid4().hex[:12]}"
    url = db.ensure_database(pg_admin_url, name)
    with db.connection(url) as conn:
        schema.migrate(conn)
    with pytest.MonkeyPatch.context() as env:
        for variable in [v for v in os.environ if v.startswith("FEATUREGEN_")]:
            env.delenv(variable)
        env.setenv("FEATUREGEN_HOME", str(root / "home"))
        env.setenv("FEATUREGEN_DATABASE_URL", url)
        env.setenv("DAGSTER_HOME", str(root / "home" / "dagster"))
        env.setenv("PYTHONPATH", str(Path(__file__).parents[1]))  # steps import this checkout
        from_env = Settings.from_env()
        settings = dataclasses.replace(
            from_env,
            links_dir=root / "links",
            models="tiny",
            models_dir=tiny_models_dir,
            download=dataclasses.replace(from_env.download, allowed_networks=("127.0.0.1",)),
            compute=dataclasses.replace(from_env.compute, num_workers=0),  # 4 images a step
        )
        categories = [c for pair in CATEGORIES.values() for c in pair]
        scenes = generate_dataset(root / "site", categories, 4, seed=5)
        with DemoServer(root / "site") as server:
            write_link_files(scenes, server.base_url, settings.links_dir)
            instance = dagster_instance(settings)
            for category in categories:  # downloads in this process: the GPU steps are the test
                assert run_category(
                    category, select=["raw_images"], instance=instance, settings=settings
                ).success
        instance.event_log_storage.set_concurrency_slots(GPU_POOL, 2)  # Ray governs, not the pool
        yield dataclasses.replace(
            settings,
            executor="ray",
            ray_address=f"http://{ray_cluster['webui_url']}",
            embedding=dataclasses.replace(settings.embedding, pooling="cls+mean"),
        )
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for database in (name, f"{name}_dagster"):
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _held_gpu(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    """When the GPU step's process ran: from its worker's start (before it loads the job, in
    its Ray job, which holds the GPU) to the step's success."""
    times = {
        record.dagster_event.event_type_value: record.timestamp
        for record in instance.all_logs(run_id)
        if record.dagster_event and record.dagster_event.step_key == GPU_STEP
    }
    return times["STEP_WORKER_STARTED"], times["STEP_SUCCESS"]


def _run_gpu_step(settings: Settings, category: str, case: str) -> None:
    """Run the category's GPU step alone (its check would be one more Ray job a run) in the
    job each step process rebuilds from the launching `settings`, tagged with its `case`. In a
    process of its own: two runs' log setups in one process deadlock in `logging`."""
    job = reconstructable_pipeline(settings).get_subset(
        asset_selection={dg.AssetKey(GPU_STEP)}, asset_check_selection=set()
    )
    instance = dagster_instance(settings)
    tags = {"dagster/partition": category, CASE_TAG: case}
    assert dg.execute_job(job, instance, tags=tags).success, category


def _run_gpu_steps_at_once(
    settings: Settings, categories: Sequence[str], cluster: dict[str, Any]
) -> list[str]:
    """Each category's GPU step in a spawned process of its own, all at once: their run ids.
    Processes, not a pool, so that a process that dies is seen, not waited for. A run not done
    within `RUN_LIMIT_S` fails the test with `_stuck_report`; a process still running at the end
    is interrupted (its run then stops its Ray jobs, dagster-ray's `terminate_step`), then
    killed."""
    case = uuid.uuid4().hex
    spawn = multiprocessing.get_context("spawn")
    processes = {
        c: spawn.Process(target=_run_gpu_step, args=(settings, c, case)) for c in categories
    }
    started = time.time()
    for process in processes.values():
        process.start()
    try:
        deadline = time.monotonic() + RUN_LIMIT_S
        for process in processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
        runs = dagster_instance(settings).get_runs(dg.RunsFilter(tags={CASE_TAG: case}))
        if stuck := [c for c, process in processes.items() if process.is_alive()]:
            report = _stuck_report(settings, [run.run_id for run in runs], cluster, started)
            pytest.fail(f"{stuck} not done in {RUN_LIMIT_S} s\n{report}", pytrace=False)
    finally:
        for process in processes.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
                process.join(60)
                process.kill()
            process.join()
    failed = {c: process.exitcode for c, process in processes.items() if process.exitcode}
    assert not failed, f"runs failed (exit codes; their errors are in the output): {failed}"
    assert len(runs) == len(categories), runs
    return [run.run_id for run in runs]


def _stuck_report(
    settings: Settings,
    run_ids: Sequence[str],
    cluster: dict[str, Any],
    since: float,
    tail: int = 15,
) -> str:
    """What stuck runs were doing: each run's status and last events, `ray status` (resources
    in use, demands waiting; authenticated as this process is) and the last lines of the Ray
    jobs' logs written `since` then (a job still pending has none)."""
    instance = dagster_instance(settings)
    lines = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        lines.append(f"run {run_id} ({run.tags.get('dagster/partition')}): {run.status.value}")
        for record in instance.all_logs(run_id)[-tail:]:
            event = record.dagster_event.event_type_value if record.dagster_event else "log"
            message = record.user_message.replace("\n", " ")[:200]
            at = time.strftime("%H:%M:%S", time.gmtime(record.timestamp))
            lines.append(f"  {at} {event} {record.step_key or ''} {message}")
    status = [sys.executable, "-m", "ray.scripts.scripts", "status", "-v"]
    try:
        shown = subprocess.run(
            [*status, "--address", cluster["gcs_address"]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines.append(f"ray status:\n{shown.stdout}{shown.stderr}")
    except subprocess.TimeoutExpired:
        lines.append("ray status: no answer in 60 s")
    logs = Path(cluster["session_dir"]) / "logs"
    for log in sorted(logs.glob("job-driver-*.log")):
        if log.stat().st_mtime >= since:
            lines.append(f"{log.name}:")
            lines.extend(f"  | {line}" for line in log.read_text().splitlines()[-tail:])
    return "\n".join(lines)


@pytest.mark.parametrize("free_gpus", [1, 2], indirect=True)
def test_two_categories_gpu_steps_overlap_only_with_two_gpus(
    launch_settings: Settings, free_gpus: int, ray_cluster: dict[str, Any]
) -> None:
    categories = CATEGORIES[free_gpus]
    run_ids = _run_gpu_steps_at_once(launch_settings, categories, ray_cluster)

    instance = dagster_instance(launch_settings)
    for run_id in run_ids:
        [starting] = [
            record
            for record in instance.all_logs(
                run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTING
            )
            if record.step_key == GPU_STEP
        ]
        assert "in Ray job" in starting.user_message
    earlier, later = sorted(_held_gpu(instance, run_id) for run_id in run_ids)
    assert (later[0] < earlier[1]) == (free_gpus == 2), (earlier, later)

    # The steps had what only the launching Settings held: the tiny models' directory (else
    # no model to load) and CLS ⊕ mean pooling (twice the tiny width).
    with db.connection(launch_settings.database_url) as conn:
        dims = conn.execute(
            "SELECT DISTINCT vector_dims(e.embedding) FROM image_embeddings e"
            " JOIN raw_images r USING (image_id) WHERE r.category = ANY(%s)",
            (list(categories),),
        ).fetchall()
    assert dims == [(2 * TINY_DIM,)]


def _waiting_notice(settings: Settings, case: str) -> str | None:
    """The first "waiting ... for the Ray cluster" warning of the run tagged `case`, if any."""
    instance = dagster_instance(settings)
    for run in instance.get_runs(dg.RunsFilter(tags={CASE_TAG: case})):
        for record in instance.all_logs(run.run_id):
            if record.user_message.startswith("waiting ") and "for the Ray cluster" in (
                record.user_message
            ):
                return record.user_message
    return None


def test_a_step_waiting_for_ray_resources_says_so_in_its_log(
    launch_settings: Settings, ray_cluster: dict[str, Any]
) -> None:
    """Both CPUs held (a placement group): the model step's Ray job stays pending, and the run
    says so, with what it asks for; freed, the step runs."""
    held = placement_group([{"CPU": 2}])
    ray.get(held.ready(), timeout=120)
    case = uuid.uuid4().hex
    process = multiprocessing.get_context("spawn").Process(
        target=_run_gpu_step, args=(launch_settings, "bank", case)
    )
    process.start()
    try:
        deadline = time.monotonic() + RUN_LIMIT_S
        while (notice := _waiting_notice(launch_settings, case)) is None:
            assert process.is_alive() and time.monotonic() < deadline, "no waiting notice"
            time.sleep(2)
    finally:
        remove_placement_group(held)
        process.join(RUN_LIMIT_S)
        if process.is_alive():
            os.kill(process.pid, signal.SIGINT)
            process.join(60)
            process.kill()
    assert process.exitcode == 0
    assert "it asks for 1 CPU, 1 GPU, the cluster's nodes have 2 CPU, 2 GPU" in notice
    assert "is pending" in notice


def _session_members(session: int) -> list[int]:
    """Ids of the processes in the session `session` (a local head's: `ray start` leads it)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) == session:  # after the command: state, ppid, pgrp, session
            members.append(int(stat.parent.name))
    return members


def test_a_run_without_a_cluster_address_starts_its_own_head_and_stops_it(
    launch_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No RAY_ADDRESS: the run starts a head of its own on this machine's resources (no GPU
    here: the model step, its device on `auto`, asks for none and runs), past a Ray address
    file naming a dead head, and leaves none of its head's processes behind."""
    settings = dataclasses.replace(launch_settings, ray_address=None, ray_keep_head=False)
    assert settings.compute.device == "auto"
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # Ray's default directory, for the run
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")  # nothing listens
    case = uuid.uuid4().hex
    process = multiprocessing.get_context("spawn").Process(
        target=_run_gpu_step, args=(settings, "cafe", case)
    )
    process.start()
    process.join(RUN_LIMIT_S)
    if process.is_alive():
        os.kill(process.pid, signal.SIGINT)
        process.join(60)
        process.kill()
        pytest.fail(f"the run was not done in {RUN_LIMIT_S} s")
    assert process.exitcode == 0

    instance = dagster_instance(settings)
    [run] = instance.get_runs(dg.RunsFilter(tags={CASE_TAG: case}))
    messages = [record.user_message for record in instance.all_logs(run.run_id)]
    [started] = [m for m in messages if m.startswith("started a local Ray head for this run")]
    assert any(m.startswith("stopped the local Ray head") for m in messages), messages
    head_pid = int(started.partition("(pid ")[2].partition(")")[0])
    assert not _session_members(head_pid)
