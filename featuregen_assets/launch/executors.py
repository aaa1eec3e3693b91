"""Where a run's steps execute (`Settings.executor`, FEATUREGEN_EXECUTOR): Dagster's default
(`multiprocess`: each step a process on the run's host); `ray`: each step a Ray job on a Ray
cluster (dagster-ray's `ray_executor`, `pip install 'featuregen[ray]'`); `k8s`: each step a
Kubernetes pod (dagster-k8s's `k8s_job_executor`, `pip install 'featuregen[k8s]'`,
deploy/k8s/values.yaml).

With Ray, `Settings.ray_address` (RAY_ADDRESS) names an existing cluster; unset, each run
starts a local Ray head of its own (`core.runtime.ray_head`: free ports, its own directory) and
stops it when it ends, or with `Settings.ray_keep_head` (FEATUREGEN_RAY_KEEP_HEAD) keeps one,
recorded in the home, for later runs (a recorded head that is gone is replaced). A step asks Ray
for the resources in its `dagster-ray/config` op tag (`launch.placement`), fitted to the
cluster's nodes when the run starts (`launch.ray_steps`).
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.execution.retries import RetryMode

from featuregen_assets.launch import placement
from featuregen_assets.settings import Settings

if TYPE_CHECKING:
    from featuregen_assets.core.runtime.ray_head import LocalRayHead

RAY_MISSING = "FEATUREGEN_EXECUTOR=ray needs Ray and dagster-ray: pip install 'featuregen[ray]'"
K8S_MISSING = "FEATUREGEN_EXECUTOR=k8s needs dagster-k8s: pip install 'featuregen[k8s]'"
# Besides the settings: what a step needs wherever Ray starts it, from this process.
_FORWARDED = ("DAGSTER_HOME", "PYTHONPATH", "HF_HOME")
# Settings a step never reads and a Ray job must not show: Ray sets its own RAY_ADDRESS in a
# job, and the serve token (a secret of `featuregen serve`) would be in every job's runtime env.
NOT_FOR_STEPS = frozenset({"RAY_ADDRESS", "FEATUREGEN_SERVE_TOKEN"})


class ExecutorUnavailable(RuntimeError):
    """The executor the settings name needs an extra that is not installed."""


def step_environment(settings: Settings) -> list[str]:
    """The environment of each Ray step, as dagster-ray's `env_vars`: every variable of
    `settings` with its value (whatever set it: a variable, the CLI, the demo), and
    `_FORWARDED` and this interpreter's PATH (a step's command is `dagster api execute_step`:
    this interpreter's `dagster` first); not `NOT_FOR_STEPS`."""
    values = [
        f"{name}={value}" for name, value in settings.to_env().items() if name not in NOT_FOR_STEPS
    ]
    path = f"PATH={Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return [*values, *_FORWARDED, path]


KEPT_HEAD_RECORD = "ray-head.json"  # in the home: the kept local head


def ray_cluster(settings: Settings) -> tuple[str, LocalRayHead | None, list[str]]:
    """Where a run's steps go: the cluster's address, the local head to stop when the run ends
    (None: none of this run's), and what to say in the run's log about it.

    The settings' cluster when they name one; else, with `ray_keep_head`, the kept head the
    home records (found or started under a file lock in the home, so concurrent runs start one
    between them); else a head started for this run alone."""
    from featuregen_assets.core.runtime import ray_head

    if settings.ray_address:
        return settings.ray_address, None, []
    if not settings.ray_keep_head:
        head = ray_head.start_local_head()
        started = f"started a local Ray head for this run at {head.dashboard_url} (pid {head.pid})"
        return head.dashboard_url, head, [f"{started}: it stops when the run ends"]
    settings.home.mkdir(parents=True, exist_ok=True)
    with (settings.home / "ray-start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        head, gone = ray_head.find_kept_head(settings.home / KEPT_HEAD_RECORD)
        notes = [f"{gone}: starting a new one"] if gone else []
        if head is None:
            head = ray_head.start_local_head(die_with_caller=False)
            head.save(settings.home / KEPT_HEAD_RECORD)
    return (
        head.dashboard_url,
        None,
        [
            *notes,
            f"the local Ray head at {head.dashboard_url} is kept after the run"
            f" (FEATUREGEN_RAY_KEEP_HEAD): `kill {head.pid}` stops it",
        ],
    )


def authenticate_as_ray_start_does() -> None:
    """Send Ray's token from this process when the local head requires one. Since Ray 2.60 `ray
    start` turns token authentication on when a token exists (`~/.ray/auth_token`, written by
    any earlier local `ray.init`), while a job-submission client sends it only with
    RAY_AUTH_MODE=token: without this, every run on the local head failed with "Authentication
    token is missing". Ray's own check, as `ray start` makes it (a Ray without token
    authentication has none, and needs none)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def ray_step_executor(settings: Settings) -> dg.ExecutorDefinition:
    """Each step a Ray job on the settings' cluster (`ray_cluster`, found or started when a
    run starts), given the settings (`step_environment`), its request fitted to the cluster
    (`ray_steps`); dagster-ray's `ray_executor` config."""
    try:
        from dagster_ray import ray_executor
        from dagster_ray.core.executor import RayExecutorConfig

        from featuregen_assets.core.runtime import ray_head
        from featuregen_assets.launch import ray_steps
    except ImportError as error:
        raise ExecutorUnavailable(RAY_MISSING) from error

    @dg.executor(
        name="ray",
        config_schema=ray_executor.config_schema,
        requirements=multiple_process_executor_requirements(),
    )
    def featuregen_ray_executor(init_context: dg.InitExecutorContext):
        authenticate_as_ray_start_does()
        config = init_context.executor_config
        ray_config = RayExecutorConfig(**config["ray"])
        address, head, notes = (
            (ray_config.address, None, []) if ray_config.address else (ray_cluster(settings))
        )
        try:
            nodes = ray_head.node_resources(address)
            device = settings.compute.device
            client = ray_steps.FittedJobSubmissionClient(
                address,
                fit=lambda step, request: placement.fit_to_nodes(step, request, device, nodes),
                metadata=ray_config.metadata,
                headers=ray_config.headers,
                cookies=ray_config.cookies,
            )
        except BaseException:
            if head is not None:
                head.stop()
            raise
        handler = ray_steps.PlacedRayStepHandler(
            nodes,
            client=client,
            env_vars=[*step_environment(settings), *(ray_config.env_vars or [])],
            runtime_env=ray_config.runtime_env,
            num_cpus=ray_config.num_cpus,
            num_gpus=ray_config.num_gpus,
            memory=ray_config.memory,
            resources=ray_config.resources,
        )
        return ray_steps.RayRunExecutor(
            handler,
            head,
            notes,
            retries=RetryMode.from_config(config["retries"]),
            max_concurrent=config.get("max_concurrent"),
            tag_concurrency_limits=config.get("tag_concurrency_limits"),
            should_verify_step=True,
        )

    return featuregen_ray_executor


def k8s_step_executor() -> dg.ExecutorDefinition:
    """dagster-k8s's `k8s_job_executor`: each step a pod with its `dagster-k8s/config` tags."""
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as error:
        raise ExecutorUnavailable(K8S_MISSING) from error
    return k8s_job_executor


def executor_for(settings: Settings) -> dg.ExecutorDefinition | None:
    """The executor the settings name; None for Dagster's default."""
    if settings.executor == "ray":
        return ray_step_executor(settings)
    return k8s_step_executor() if settings.executor == "k8s" else None
