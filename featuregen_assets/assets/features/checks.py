"""Checks of the feature assets, per category partition, read from what the tables hold."""

from collections.abc import Callable
from typing import Any

import dagster as dg
import psycopg

from featuregen_assets.assets.features.image_embeddings import image_embeddings
from featuregen_assets.assets.features.image_prompts import image_prompts
from featuregen_assets.assets.features.prompt_embeddings import prompt_embeddings
from featuregen_assets.core.store.feature_store import (
    embedding_stats,
    prompt_stats,
    text_vector_stats,
)
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.postgres import PostgresResource

UNIT_NORM_TOLERANCE = 1e-3

Stats = dict[str, Any]


def _latest_model(context: dg.AssetCheckExecutionContext, asset: dg.AssetKey) -> str | None:
    """The `model` recorded by the partition's latest materialisation of `asset`."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[context.partition_key]),
        limit=1,
    ).records
    if not records:
        return None
    value = records[0].asset_materialization.metadata.get("model")
    return value.value if value is not None else None


def _check_latest_model(
    context: dg.AssetCheckExecutionContext,
    postgres: PostgresResource,
    asset: dg.AssetKey,
    stats: Callable[[psycopg.Connection, str, str], Stats],
    judge: Callable[[Stats], tuple[bool, Stats]],
) -> dg.AssetCheckResult:
    """Judge the `stats` of the partition's rows from the model that `asset` last recorded;
    `judge` says whether they pass and adds metadata. Fails when never materialised."""
    model = _latest_model(context, asset)
    if model is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "never materialised"})
    with postgres.connection() as conn:
        found = stats(conn, context.partition_key, model)
    passed, extra = judge(found)
    return dg.AssetCheckResult(passed=bool(passed), metadata={"model": model, **found, **extra})


def _complete_and_unit_norm(stats: Stats, expected: str) -> bool:
    """Every expected row (``stats[expected]``) has a vector, all of one dimension and unit norm."""
    return (
        stats["embedded"] == stats[expected]
        and stats["min_dim"] == stats["max_dim"]
        and (
            stats["embedded"] == 0
            or abs(stats["min_norm"] - 1) < UNIT_NORM_TOLERANCE
            and abs(stats["max_norm"] - 1) < UNIT_NORM_TOLERANCE
        )
    )


@dg.asset_check(asset=image_embeddings, partitions_def=category_partitions)
def embeddings_complete_and_normalised(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource
) -> dg.AssetCheckResult:
    """One vector per `ok` image, of one dimension, of unit norm (pgvector refuses NaN)."""

    def judge(stats: Stats) -> tuple[bool, Stats]:
        return _complete_and_unit_norm(stats, "images"), {}

    return _check_latest_model(context, postgres, image_embeddings.key, embedding_stats, judge)


@dg.asset_check(asset=image_prompts, partitions_def=category_partitions)
def prompts_complete(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource
) -> dg.AssetCheckResult:
    """One non-empty generated prompt per `ok` image; reports the share cut at max_new_tokens."""

    def judge(stats: Stats) -> tuple[bool, Stats]:
        truncated_share = stats["truncated"] / stats["prompted"] if stats["prompted"] else 0.0
        passed = stats["prompted"] == stats["images"] and stats["empty"] == 0
        return passed, {"truncated_share": truncated_share}

    return _check_latest_model(context, postgres, image_prompts.key, prompt_stats, judge)


@dg.asset_check(asset=prompt_embeddings, partitions_def=category_partitions)
def text_vectors_complete_and_normalised(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource
) -> dg.AssetCheckResult:
    """A vector of every text of the category's images as the text is now, of one dimension,
    of unit norm."""

    def judge(stats: Stats) -> tuple[bool, Stats]:
        return _complete_and_unit_norm(stats, "texts"), {}

    return _check_latest_model(context, postgres, prompt_embeddings.key, text_vector_stats, judge)
