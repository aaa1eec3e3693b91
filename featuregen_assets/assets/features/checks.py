"""Checks of the feature assets, per category partition, read from what the tables hold."""

import dagster as dg

from featuregen_assets.core.store.feature_store import embedding_stats, prompt_stats
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.postgres import PostgresResource

UNIT_NORM_TOLERANCE = 1e-3


def _latest_model(context: dg.AssetCheckExecutionContext, asset: str) -> str | None:
    """The `model` recorded by the partition's latest materialisation of `asset`."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=[context.partition_key]
        ),
        limit=1,
    ).records
    if not records:
        return None
    value = records[0].asset_materialization.metadata.get("model")
    return value.value if value is not None else None


@dg.asset_check(asset="image_embeddings", partitions_def=category_partitions)
def embeddings_complete_and_normalised(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource
) -> dg.AssetCheckResult:
    """One vector per `ok` image, of one dimension, of unit norm (pgvector refuses NaN)."""
    model = _latest_model(context, "image_embeddings")
    if model is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "never materialised"})
    with postgres.connection() as conn:
        stats = embedding_stats(conn, context.partition_key, model)
    passed = (
        stats["embedded"] == stats["images"]
        and stats["min_dim"] == stats["max_dim"]
        and (
            stats["embedded"] == 0
            or abs(stats["min_norm"] - 1) < UNIT_NORM_TOLERANCE
            and abs(stats["max_norm"] - 1) < UNIT_NORM_TOLERANCE
        )
    )
    return dg.AssetCheckResult(passed=bool(passed), metadata={"model": model, **stats})


@dg.asset_check(asset="image_prompts", partitions_def=category_partitions)
def prompts_complete(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource
) -> dg.AssetCheckResult:
    """One non-empty generated prompt per `ok` image; reports the share cut at max_new_tokens."""
    model = _latest_model(context, "image_prompts")
    if model is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "never materialised"})
    with postgres.connection() as conn:
        stats = prompt_stats(conn, context.partition_key, model)
    truncated_share = stats["truncated"] / stats["prompted"] if stats["prompted"] else 0.0
    return dg.AssetCheckResult(
        passed=stats["prompted"] == stats["images"] and stats["empty"] == 0,
        metadata={"model": model, **stats, "truncated_share": truncated_share},
    )
