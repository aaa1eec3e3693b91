"""Launch the category pipeline and the trainings on the Dagster instance in FEATUREGEN_HOME."""

import contextlib
import fcntl
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from featuregen_assets.core.ingest.link_formats import find_link_file, missing_link_file_message
from featuregen_assets.core.runtime.processes import is_running
from featuregen_assets.core.store.db import database_url
from featuregen_assets.jobs import category_pipeline_job, training_job
from featuregen_assets.launch import instance_config
from featuregen_assets.launch.run_console import (
    console,
    dagster_console,
    keep_stray_output,
    stray_output_to_log,
)
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.models import GPU_POOL
from featuregen_assets.settings import Settings

if TYPE_CHECKING:
    from dagster._core.definitions.reconstruct import ReconstructableJob

SETUP_LOCK = ".featuregen-setup.lock"
PID_TAG = "featuregen/pid"
HOST_TAG = "featuregen/host"

_log = logging.getLogger(__name__)


def dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME, set to `settings.home`/dagster in this process's environment unless it is
    set: Dagster reads it there (`DagsterInstance.get`), and so do the processes started from
    here (steps, `featuregen dev`'s dagster dev, Ray steps, which are forwarded it)."""
    return Path(os.environ.setdefault("DAGSTER_HOME", str(settings.home / "dagster")))


def prepare_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME (default `settings.home`/dagster), with featuregen's dagster.yaml if it has
    none or one an earlier featuregen wrote (a dagster.yaml of your own is left as it is).

    The instance lives in PostgreSQL beside the feature tables (`instance_database_url`).
    """
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    features_url = database_url(settings.database_url, settings.home)
    replaced = instance_config.write(config, instance_config.instance_database_url(features_url))
    if replaced and instance_config.uses_sqlite(replaced) and (home / "history").exists():
        _log.warning(
            f"Dagster's instance moved to PostgreSQL: the runs in {home / 'history'} (SQLite)"
            " are kept there but no longer shown (docs/operations.md: Dagster's instance)"
        )
    return home


CODE_LOCATION = "featuregen"  # as in workspace.yaml: sensor state and cursors are kept by it
# dagster dev options that choose what to load: given one, `featuregen dev` adds no workspace.
TARGET_OPTIONS = (
    "-w",
    "--workspace",
    "-m",
    "--module-name",
    "-f",
    "--python-file",
    "--package-name",
    "--autoload-defs-module-name",
    "--empty-workspace",
    "--grpc-host",
    "--grpc-port",
    "--grpc-socket",
)


def write_workspace(home: Path) -> Path:
    """A workspace file in `home` with workspace.yaml's content: the code location
    `featuregen`, loaded from the installed package."""
    path = home / "workspace.yaml"
    path.write_text(
        "# Written by `featuregen dev`: the repository's workspace.yaml.\n"
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: featuregen_assets.definitions\n"
        f"      location_name: {CODE_LOCATION}\n"
    )
    return path


def dagster_dev_command(args: Sequence[str], dagster_home: Path) -> list[str]:
    """`dagster dev` with `args` unchanged, in this interpreter (also when its bin/ is not on
    PATH), on featuregen's code location (a workspace file in `dagster_home`) unless `args`
    choose what to load."""
    command = [sys.executable, "-m", "dagster", "dev"]
    if not any(arg.split("=", 1)[0] in TARGET_OPTIONS for arg in args):
        command += ["-w", str(write_workspace(dagster_home))]
    return command + list(args)


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance in `prepare_dagster_home(settings)`. The home is prepared and the
    instance's storages are created under an exclusive file lock (`SETUP_LOCK` in the home), so
    two first runs on a new home never race in Dagster's storage setup."""
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    with (home / SETUP_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prepare_dagster_home(settings)
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # run storage
        instance.get_dynamic_partitions(category_partitions.name)  # event log storage
        instance.all_instigator_state()  # schedule storage
    return instance


def ensure_partition(instance: dg.DagsterInstance, category: str) -> None:
    """Add the category as a partition unless it is one."""
    if not instance.has_dynamic_partition(category_partitions.name, category):
        instance.add_dynamic_partitions(category_partitions.name, [category])


def _launch_tags() -> dict[str, str]:
    """Tags naming this process, so a later command can tell when it died mid-run."""
    return {
        "featuregen/launched_by": "cli",
        PID_TAG: str(os.getpid()),
        HOST_TAG: socket.gethostname(),
    }


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs this host's featuregen commands started and died in (killed, hung
    up), and free the pool slots they held, which would otherwise block every later GPU step.
    Returns their run ids."""
    runs = instance.get_runs(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
            tags={HOST_TAG: socket.gethostname()},
        )
    )
    orphaned = [run for run in runs if not is_running(int(run.tags[PID_TAG]))]
    for run in orphaned:
        instance.report_run_failed(
            run, message=f"The featuregen process that ran it (pid {run.tags[PID_TAG]}) is gone."
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        _log.warning(
            f"run {run.run_id} marked failed: its process (pid {run.tags[PID_TAG]}) is gone"
        )
    return [run.run_id for run in orphaned]


def gpu_pool_holders(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """`(run id, step)` of the steps holding every slot of the GPU pool now; empty when a
    slot is free (or the instance has no pool limits)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    info = storage.get_concurrency_info(GPU_POOL)
    if info.limit is None or info.active_slot_count < info.limit:
        return []
    return [(slot.run_id, slot.step_key) for slot in info.claimed_slots]


def _ready(instance: dg.DagsterInstance | None, settings: Settings) -> dg.DagsterInstance:
    """The instance to launch on (default the one in the settings' home), with this host's
    orphaned runs failed, and a word when the GPU pool is full; the home remembers the
    settings' model profile (if it has none yet)."""
    settings.remember_models()
    instance = instance or dagster_instance(settings)
    fail_orphaned_runs(instance)
    if holders := gpu_pool_holders(instance):
        held_by = ", ".join(f"{step} of run {run_id}" for run_id, step in holders)
        _log.warning(
            f"the {GPU_POOL} pool is full ({held_by}):"
            " this run's model steps start when a slot frees"
        )
    return instance


def _launch(
    defs: dg.Definitions,
    job_name: str,
    instance: dg.DagsterInstance,
    select: Sequence[str] | None,
    run_config: dict | None,
    log_level: str,
    verbose: bool,
    home: Path,
    partition_key: str | None = None,
    every_s: float = 0.0,
) -> dg.ExecuteInProcessResult:
    """Run a job of `defs` in this process, its console as `run_console.console` sets it;
    unless `verbose`, what else reaches stderr meanwhile goes to a file under `home`'s logs
    (`run_console.stray_output_to_log`)."""
    job, console_config = console(defs.resolve_job_def(job_name), log_level, verbose, every_s)
    with contextlib.ExitStack() as stack:
        capture = None if verbose else stack.enter_context(stray_output_to_log(home))
        result = job.execute_in_process(
            partition_key=partition_key,
            instance=instance,
            asset_selection=[dg.AssetKey(key) for key in select] if select else None,
            run_config={**(run_config or {}), **console_config},
            raise_on_error=False,
            tags=_launch_tags(),
        )
    if capture is not None:
        keep_stray_output(capture, home, result.run_id)
    return result


def category_pipeline(environ: Mapping[str, str] | None = None) -> dg.JobDefinition:
    """The category pipeline built from the settings `environ` gives over this process's
    variables (None: the code location's definitions). Reconstructable: a step in a Ray job
    or a pod loads it by this name and `environ` (`reconstructable_pipeline`)."""
    from featuregen_assets.definitions import build_defs

    settings = None if environ is None else Settings.from_env({**os.environ, **environ})
    return build_defs(settings).resolve_job_def(category_pipeline_job.name)


def reconstructable_pipeline(settings: Settings) -> "ReconstructableJob":
    """The category pipeline as each step process rebuilds it: from `settings` (CLI defaults
    and the demo's settings included), less the secrets (stored with the run), which reach
    a Ray step through the executor's environment (`executors.step_environment`)."""
    return dg.build_reconstructable_job(
        __name__,
        category_pipeline.__name__,
        reconstructable_kwargs={"environ": settings.to_env(secrets=False)},
    )


def run_category(
    category: str,
    select: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    run_config: dict | None = None,
    log_level: str = "INFO",
    verbose: bool = False,
    settings: Settings | None = None,
) -> dg.ExecuteInProcessResult | dg.JobExecutionResult:
    """Run the category pipeline (or the `select`ed assets) for one partition with `settings`
    (default: FEATUREGEN_* variables, read now): in this process, or with the `ray` (`k8s`)
    executor each step as a Ray job (a pod), which reads its settings where it runs. The
    console shows the steps' lines at `log_level` (`verbose`, or under Ray or k8s: Dagster's
    console log).

    Raises `LookupError`, before adding the partition, when the category has no link file
    and is new or `raw_images` (which reads the file) is selected."""
    from featuregen_assets.definitions import build_defs

    settings = settings or Settings.from_env()
    defs = build_defs(settings)
    instance = _ready(instance, settings)
    if find_link_file(settings.links_dir, category) is None and (
        not instance.has_dynamic_partition(category_partitions.name, category)
        or not select
        or "raw_images" in select
    ):
        raise LookupError(missing_link_file_message(settings.links_dir, category))
    ensure_partition(instance, category)
    if settings.executor != "multiprocess":  # Ray jobs or Kubernetes pods, one a step
        return dg.execute_job(
            reconstructable_pipeline(settings),
            instance,
            run_config={**(run_config or {}), **dagster_console(log_level, verbose)},
            tags={**_launch_tags(), "dagster/partition": category},
            asset_selection=[dg.AssetKey(key) for key in select] if select else None,
        )
    return _launch(
        defs,
        category_pipeline_job.name,
        instance,
        select,
        run_config,
        log_level,
        verbose,
        settings.home,
        partition_key=category,
    )


def materialize_unpartitioned(
    keys: Sequence[str],
    instance: dg.DagsterInstance | None = None,
    run_config: dict | None = None,
    log_level: str = "INFO",
    verbose: bool = False,
    settings: Settings | None = None,
    every_s: float = 0.0,
) -> dg.ExecuteInProcessResult:
    """Materialise unpartitioned assets (the trained models) by key, as one run of the
    training job (settings and console as in `run_category`; `every_s`: a step's epoch lines
    at most that often)."""
    from featuregen_assets.definitions import build_defs

    settings = settings or Settings.from_env()
    defs = build_defs(settings)
    instance = _ready(instance, settings)
    return _launch(
        defs,
        training_job.name,
        instance,
        keys,
        run_config,
        log_level,
        verbose,
        settings.home,
        every_s=every_s,
    )


def materialize_report(
    inputs: Mapping[str, str] | None = None,
    seeds: int = 1,
    instance: dg.DagsterInstance | None = None,
    settings: Settings | None = None,
    variants: Sequence[str] | None = None,
    variant_epochs: int | None = None,
    decoder_epochs: int | None = None,
) -> tuple[dg.ExecuteInProcessResult, Path | None]:
    """Materialise `research_report` (a Dagster run); the run and its report.md (None when
    the run failed). `inputs`: the report's input paths by config field (`query_file`,
    `probe_masks`, `probe_records`; none: template queries from the test captions, no probes).
    `variants`: the learned variants to train (None: the asset's default),
    for `variant_epochs` (None: the text encoder's); `decoder_epochs`: the report's own two
    decoders' (None: the registered decoder's)."""
    config = {
        "seeds": seeds,
        **(inputs or {}),
        **({"variants": list(variants)} if variants is not None else {}),
        **({"variant_epochs": variant_epochs} if variant_epochs is not None else {}),
        **({"decoder_epochs": decoder_epochs} if decoder_epochs is not None else {}),
    }
    result = materialize_unpartitioned(
        ["research_report"],
        instance=instance,
        run_config={"ops": {"research_report": {"config": config}}},
        log_level="INFO",  # its phases as they go
        settings=settings,
    )
    events = result.asset_materializations_for_node("research_report")
    if not result.success or not events:
        return result, None
    return result, Path(events[0].metadata["report"].value)
