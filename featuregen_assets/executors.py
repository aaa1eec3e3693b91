"""Where a run's steps execute (`Settings.executor`, FEATUREGEN_EXECUTOR): Dagster's default
(`multiprocess`: each step a process on the run's host); `ray`: each step a Ray job on a Ray
cluster (dagster-ray's `ray_executor`, `pip install 'featuregen[ray]'`); `k8s`: each step a
Kubernetes pod (dagster-k8s's `k8s_job_executor`, `pip install 'featuregen[k8s]'`,
deploy/k8s/values.yaml).

With Ray, `Settings.ray_address` (RAY_ADDRESS) names an existing cluster; unset, a local Ray
head is started on first use and left running for later runs and processes (`ray stop` stops
it). A step asks Ray for the resources in its `dagster-ray/config` op tag
(`featuregen_assets.placement`).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements

from featuregen_assets.settings import Settings

RAY_MISSING = "FEATUREGEN_EXECUTOR=ray needs Ray and dagster-ray: pip install 'featuregen[ray]'"
K8S_MISSING = "FEATUREGEN_EXECUTOR=k8s needs dagster-k8s: pip install 'featuregen[k8s]'"
# Besides the settings: what a step needs wherever Ray starts it, from this process.
_FORWARDED = ("DAGSTER_HOME", "PYTHONPATH", "HF_HOME")


class ExecutorUnavailable(RuntimeError):
    """The executor the settings name needs an extra that is not installed."""


def step_environment(settings: Settings) -> list[str]:
    """The environment of each Ray step, as dagster-ray's `env_vars`: every variable of
    `settings` with its value (whatever set it: a variable, the CLI, the demo), and
    `_FORWARDED` and this interpreter's PATH (a step's command is `dagster api execute_step`:
    this interpreter's `dagster` first). RAY_ADDRESS is left to Ray, which sets it in a job."""
    values = [
        f"{name}={value}" for name, value in settings.to_env().items() if name != "RAY_ADDRESS"
    ]
    path = f"PATH={Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return [*values, *_FORWARDED, path]


def ensure_ray_cluster(settings: Settings) -> None:
    """Nothing when the settings name a cluster; else make sure a local Ray head runs, starting
    one (under a file lock in the home, so concurrent runs start one between them)."""
    if settings.ray_address:
        return
    from ray.job_submission import JobSubmissionClient

    authenticate_as_ray_start_does()

    settings.home.mkdir(parents=True, exist_ok=True)
    with (settings.home / "ray-start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            JobSubmissionClient()  # finds a running local cluster
            return
        except ConnectionError:
            pass
        ray = [sys.executable, "-m", "ray.scripts.scripts"]
        subprocess.run(
            [*ray, "start", "--head", "--disable-usage-stats", "--dashboard-host", "127.0.0.1"],
            check=True,
            stdout=subprocess.DEVNULL,
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
    """dagster-ray's `ray_executor` on the settings' cluster (found or started when a run
    starts), each step given the settings (`step_environment`)."""
    try:
        from dagster_ray import ray_executor
    except ImportError as error:
        raise ExecutorUnavailable(RAY_MISSING) from error

    @dg.executor(
        name="ray",
        config_schema=ray_executor.config_schema,
        requirements=multiple_process_executor_requirements(),
    )
    def featuregen_ray_executor(init_context: dg.InitExecutorContext):
        ensure_ray_cluster(settings)
        config = dict(init_context.executor_config)
        ray_config = dict(config["ray"])
        ray_config["address"] = ray_config.get("address") or settings.ray_address
        ray_config["env_vars"] = [*step_environment(settings), *(ray_config.get("env_vars") or [])]
        init_context = init_context._replace(executor_config={**config, "ray": ray_config})
        return ray_executor.executor_creation_fn(init_context)

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
