"""`image_embeddings`: one DINOv2 feature vector per downloaded image of the category."""

import dagster as dg

from featuregen_assets.assets.features.model_step import ModelStep
from featuregen_assets.assets.ingest.raw_images import raw_images
from featuregen_assets.core.ingest.store_check import intact
from featuregen_assets.core.store.feature_store import image_count, missing_embeddings
from featuregen_assets.core.store.table import Table
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.io_manager import PGVECTOR_IO_MANAGER
from featuregen_assets.resources.models import GPU_POOL, EmbedderResource
from featuregen_assets.resources.postgres import PostgresResource

EMBEDDING = ModelStep(
    columns=("embedding",),
    doing="embedding",
    done="embedded",
    results="embeddings",
    count="embedded",
)


@dg.asset(
    partitions_def=category_partitions,
    deps=[raw_images],
    group_name="features",
    kinds={"pytorch", "pgvector"},
    pool=GPU_POOL,
    io_manager_key=PGVECTOR_IO_MANAGER,
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
        pending, damaged = intact(
            conn, missing_embeddings(conn, context.partition_key, model.key), context.partition_key
        )
        images = image_count(conn, context.partition_key)
    step = EMBEDDING.run(
        context,
        model.key,
        pending,
        model.embed_files,
        embedder.compute,
        images,
        f" (dim {model.dim})",
        damaged,
    )
    context.add_output_metadata({**step.metadata, "dim": model.dim})
    return step.table()
