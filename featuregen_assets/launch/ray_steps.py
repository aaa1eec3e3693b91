"""A run's steps as Ray jobs, as featuregen runs them (`executors.ray_step_executor`):
dagster-ray's step handler with each step's request fitted to the cluster's nodes
(`placement.fit_to_nodes`: a run whose steps no node can serve fails before its first step), a
warning in the run's log (and so the CLI) while a step's Ray job waits for resources, and the
local head featuregen started for the run stopped when the run ends. Imported only with
FEATUREGEN_EXECUTOR=ray (it needs Ray and dagster-ray).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandlerContext,
)
from dagster_ray.configs import RayExecutionConfig
from dagster_ray.core.executor import RayStepHandler
from ray.job_submission import JobStatus, JobSubmissionClient

from featuregen_assets.core.runtime.ray_head import LocalRayHead
from featuregen_assets.launch.placement import amounts

WAIT_NOTICE_S = 15.0  # a step's Ray job pending this long is said to wait, then every minute
NOTICE_EVERY_S = 60.0
HEALTH_CHECK_EVERY_S = 10  # how often a running step's Ray job is looked at (Dagster's: 20)

Fit = Callable[[str, Mapping[str, float]], dict[str, float]]


class FittedJobSubmissionClient(JobSubmissionClient):
    """A job-submission client that submits each step's Ray job with its request fitted by
    `fit(step, request)` (dagster-ray's handler names the step in the job's metadata)."""

    def __init__(self, address: str, fit: Fit, **kwargs) -> None:
        super().__init__(address, **kwargs)
        self.fit = fit

    def submit_job(self, **kwargs) -> str:
        request = {
            "CPU": kwargs.pop("entrypoint_num_cpus", None),
            "GPU": kwargs.pop("entrypoint_num_gpus", None),
            "memory": kwargs.pop("entrypoint_memory", None),
            **(kwargs.pop("entrypoint_resources", None) or {}),
        }
        step = (kwargs.get("metadata") or {}).get("dagster/op", "a step")
        fitted = self.fit(step, {name: amount for name, amount in request.items() if amount})
        custom = {n: a for n, a in fitted.items() if n not in ("CPU", "GPU", "memory")}
        return super().submit_job(
            **kwargs,
            entrypoint_num_cpus=fitted.get("CPU"),
            entrypoint_num_gpus=fitted.get("GPU"),
            entrypoint_memory=int(fitted["memory"]) if "memory" in fitted else None,
            entrypoint_resources=custom or None,
        )


class PlacedRayStepHandler(RayStepHandler):
    """dagster-ray's step handler on a `FittedJobSubmissionClient`, which says in the step's
    log when its Ray job has waited `WAIT_NOTICE_S` to start (and every `NOTICE_EVERY_S`)."""

    client: FittedJobSubmissionClient

    def __init__(self, nodes: Sequence[Mapping[str, float]], **kwargs) -> None:
        super().__init__(**kwargs)
        self.nodes = nodes
        self._noticed: dict[str, float] = {}

    def request(self, step: str, tags: Mapping[str, str]) -> dict[str, float]:
        """What `step` (its op `tags`) asks Ray for, fitted: as dagster-ray reads it (the
        executor's config over the `dagster-ray/config` tag), then `client.fit`."""
        config = RayExecutionConfig.from_tags(tags)
        asked = {
            "CPU": self.num_cpus or config.num_cpus,
            "GPU": self.num_gpus or config.num_gpus,
            "memory": self.memory or config.memory,
            **(self.resources or {}),
            **(config.resources or {}),
        }
        return self.client.fit(step, {name: amount for name, amount in asked.items() if amount})

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        health = super().check_step_health(step_handler_context)
        if health.is_healthy:
            self._notice_waiting(step_handler_context)
        return health

    def _notice_waiting(self, context: StepHandlerContext) -> None:
        submission_id = self._get_ray_job_submission_id(context)
        info = self.client.get_job_info(submission_id)
        waited = time.time() - (info.start_time or 0) / 1000
        last = self._noticed.get(submission_id)
        if info.status != JobStatus.PENDING or waited < WAIT_NOTICE_S:
            return
        if last is not None and time.monotonic() - last < NOTICE_EVERY_S:
            return
        self._noticed[submission_id] = time.monotonic()
        step = self._get_step_key(context)
        nodes = "; ".join(amounts(_countable(node)) for node in self.nodes)
        context.get_step_context(step).log.warning(
            f"waiting {waited:.0f} s for the Ray cluster to start it: it asks for"
            f" {amounts(self.request(step, context.step_tags[step]))}, the cluster's nodes"
            f" have {nodes}, and Ray's job {submission_id} is pending ({info.message})"
        )


def _countable(node: Mapping[str, float]) -> dict[str, float]:
    """A node's resources less Ray's bookkeeping ones (`node:<ip>`, object store memory):
    CPU, GPU and memory first, then custom ones by name."""
    first = {name: node[name] for name in ("CPU", "GPU", "memory") if name in node}
    custom = {
        name: node[name]
        for name in sorted(node)
        if name not in first and not name.startswith("node:") and name != "object_store_memory"
    }
    return {**first, **custom}


class RayRunExecutor(StepDelegatingExecutor):
    """The step-delegating executor over `PlacedRayStepHandler`: before the first step it
    fits every step of the plan (a step no node can serve fails the run then, naming the
    resource) and logs `notes` (where the cluster is); when the run ends, however it ends, it
    stops `head` (the local head started for this run; None: none to stop)."""

    def __init__(
        self,
        step_handler: PlacedRayStepHandler,
        head: LocalRayHead | None,
        notes: Sequence[str],
        **kwargs,
    ) -> None:
        super().__init__(
            step_handler, check_step_health_interval_seconds=HEALTH_CHECK_EVERY_S, **kwargs
        )
        self.handler = step_handler
        self.head = head
        self.notes = notes

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator:
        try:
            for note in self.notes:
                plan_context.log.info(note)
            for key in execution_plan.step_keys_to_execute:
                self.handler.request(key, execution_plan.get_step_by_key(key).tags)
            yield from super().execute(plan_context, execution_plan)
        finally:
            if self.head is not None:
                killed = self.head.stop()
                forced = f" ({len(killed)} processes killed after the grace period)"
                plan_context.log.info(
                    f"stopped the local Ray head at {self.head.dashboard_url}"
                    + (forced if killed else "")
                )
