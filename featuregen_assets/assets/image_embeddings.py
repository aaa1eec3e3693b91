"""`image_embeddings`: one DINOv2 feature vector per downloaded image of the category."""

import dagster as dg
import numpy as np

from featuregen_assets.core.feature_store import missing_embeddings
from featuregen_assets.core.progress import ProgressReporter, track
from featuregen_assets.core.table import Table
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.models import EmbedderResource, image_paths
from featuregen_assets.resources.postgres import PostgresResource


@dg.asset(
    partitions_def=category_partitions,
    deps=["raw_images"],
    group_name="features",
    kinds={"pytorch", "pgvector"},
    pool="gpu",
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
    """L2-normalised DINOv2 vectors of the category's images not yet embedded by this model."""
    model = embedder.embedder
    with postgres.connection() as conn:
        pending = missing_embeddings(conn, context.partition_key, model.key)
    context.log.info(f"embedding {len(pending)} images with {model.key} (dim {model.dim})")

    image_ids, vectors, failures = [], [], []
    report = ProgressReporter(f"{context.partition_key} embeddings", context.log.info, "images")
    results = model.embed_files(image_paths(pending))
    for index, vector, error in track(results, len(pending), _failed, report):
        if vector is None:
            failures.append(f"{pending[index][0]}: {error}")
            continue
        image_ids.append(pending[index][0])
        vectors.append(vector)
    for failure in failures:
        context.log.warning(f"not embedded: {failure}")

    context.add_output_metadata(
        {"model": model.key, "dim": model.dim, "embedded": len(image_ids), "failed": len(failures)}
    )
    return Table(
        {
            "image_id": image_ids,
            "model": [model.key] * len(image_ids),
            "embedding": np.stack(vectors) if vectors else np.zeros((0, model.dim), np.float32),
        }
    )


def _failed(result: tuple[int, np.ndarray | None, str | None]) -> bool:
    return result[1] is None
