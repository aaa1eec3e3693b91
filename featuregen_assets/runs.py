"""Launch the category pipeline in-process against the Dagster instance in FEATUREGEN_HOME."""

import os
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from featuregen_assets.core.paths import featuregen_home
from featuregen_assets.partitions import category_partitions

INSTANCE_CONFIG = """\
# Written by featuregen. GPU steps (pool "gpu") run one at a time; raise the limit for more GPUs.
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def prepare_dagster_home() -> Path:
    """DAGSTER_HOME (default FEATUREGEN_HOME/dagster), with featuregen's dagster.yaml if none."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(featuregen_home() / "dagster")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_CONFIG)
    return home


def dagster_instance() -> dg.DagsterInstance:
    """The persistent instance in `prepare_dagster_home()`."""
    prepare_dagster_home()
    return dg.DagsterInstance.get()


def ensure_partition(instance: dg.DagsterInstance, category: str) -> None:
    """Add the category as a partition unless it is one."""
    if not instance.has_dynamic_partition(category_partitions.name, category):
        instance.add_dynamic_partitions(category_partitions.name, [category])


def quiet_logs(level: str) -> dict:
    """Run config that shows only run-log lines at `level` or above on the console."""
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def run_category(
    category: str,
    select: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    run_config: dict | None = None,
    log_level: str = "INFO",
) -> dg.ExecuteInProcessResult:
    """Run the category pipeline (or the `select`ed assets) for one partition."""
    from featuregen_assets.definitions import defs

    instance = instance or dagster_instance()
    ensure_partition(instance, category)
    job = defs.resolve_job_def("category_pipeline")
    return job.execute_in_process(
        partition_key=category,
        instance=instance,
        asset_selection=[dg.AssetKey(key) for key in select] if select else None,
        run_config={**(run_config or {}), **quiet_logs(log_level)},
        raise_on_error=False,
        tags={"featuregen/launched_by": "cli"},
    )


def materialize_unpartitioned(
    keys: Sequence[str],
    instance: dg.DagsterInstance | None = None,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialise unpartitioned assets (the trained models) by key."""
    from featuregen_assets.definitions import defs

    return dg.materialize(
        [defs.get_assets_def(key) for key in keys],
        instance=instance or dagster_instance(),
        resources=defs.resources,
        run_config=run_config,
        raise_on_error=False,
        tags={"featuregen/launched_by": "cli"},
    )
