"""`image_embeddings`: one DINOv2 feature vector per downloaded image of the category."""

import dagster as dg
import numpy as np

from featuregen_assets.assets.features.model_step import resume_checkpoint
from featuregen_assets.core.runtime.progress import ProgressReporter, track
from featuregen_assets.core.store.feature_store import missing_embeddings
from featuregen_assets.core.store.table import Table
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.models import GPU_POOL, EmbedderResource, image_paths
from featuregen_assets.resources.postgres import PostgresResource


@dg.asset(
    partitions_def=category_partitions,
    deps=["raw_images"],
    group_name="features",
    kinds={"pytorch", "pgvector"},
    pool=GPU_POOL,
    io_manager_key="pgvector_io_manager",
    automation_condition=dg.AutomationCondition.eager(),
    metadata={
        "partition_expr": "raw_images.category",
        "primary_key": ["image_id", "model"],
        "hnsw_by": "model",
    },
)
def image_embeddings(
    context: dg.AssetExecutionContext, embedder: EmbedderResource, postgres: PostgresResource
) -> Table:
    """L2-normalised DINOv2 vectors of the category's images not yet embedded by this model.

    Finished vectors are checkpointed as they come; a re-run after a failure resumes there.
    """
    model = embedder.embedder
    with postgres.connection() as conn:
        pending = missing_embeddings(conn, context.partition_key, model.key)
    checkpoint, todo, resumed = resume_checkpoint(
        context,
        model.key,
        ("image_id", "embedding"),
        pending,
        embedder.compute.checkpoint_interval_s(),
    )
    context.log.info(
        f"embedding {len(todo)} images with {model.key} (dim {model.dim})"
        + (f" ({resumed} more resumed from a checkpoint)" if resumed else "")
    )

    failures = []
    report = ProgressReporter(f"{context.partition_key} embeddings", context.log.info, "images")
    results = model.embed_files(image_paths(todo))
    for index, vector, error in track(results, len(todo), _failed, report):
        if vector is None:
            failures.append(f"{todo[index][0]}: {error}")
            continue
        checkpoint.add((todo[index][0], vector))
    checkpoint.flush()
    for failure in failures:
        context.log.warning(f"not embedded: {failure}")

    embedded = checkpoint.table()
    context.add_output_metadata(
        {
            "model": model.key,
            "dim": model.dim,
            "embedded": len(embedded),
            "resumed": resumed,
            "failed": len(failures),
        }
    )
    return Table(
        {
            "image_id": embedded.columns["image_id"],
            "model": [model.key] * len(embedded),
            "embedding": embedded.columns["embedding"]
            if len(embedded)
            else np.zeros((0, model.dim), np.float32),
        }
    )


def _failed(result: tuple[int, np.ndarray | None, str | None]) -> bool:
    return result[1] is None
