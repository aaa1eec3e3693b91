"""Check of `raw_images`, per category partition, read from what the table holds."""

import dagster as dg

from featuregen_assets.assets.ingest.raw_images import raw_images
from featuregen_assets.core.ingest.ingest import failure_rate, status_counts
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.postgres import PostgresResource
from featuregen_assets.settings import Settings


@dg.asset_check(asset=raw_images, partitions_def=category_partitions, blocking=True)
def failure_rate_below_threshold(
    context: dg.AssetCheckExecutionContext,
    postgres: PostgresResource,
    settings: dg.ResourceParam[Settings],
) -> dg.AssetCheckResult:
    """Fails the partition when the share of failed links passes FEATUREGEN_MAX_FAILURE_RATE."""
    threshold = settings.max_failure_rate
    with postgres.connection() as conn:
        counts = status_counts(conn, context.partition_key)
    rate = failure_rate(counts)
    return dg.AssetCheckResult(
        passed=rate <= threshold,
        metadata={"failure_rate": rate, "threshold": threshold, "by_status": counts},
    )
