"""`image_embeddings`: one DINOv2 feature vector per downloaded image of the category."""

import dagster as dg

from featuregen_assets.assets.features.model_step import ModelStep, feature_asset
from featuregen_assets.assets.ingest.raw_images import raw_images
from featuregen_assets.core.ingest.store_check import intact
from featuregen_assets.core.store.feature_store import image_count, missing_embeddings
from featuregen_assets.core.store.table import Table
from featuregen_assets.resources.models import ImageEmbedderResource
from featuregen_assets.resources.postgres import PostgresResource

EMBEDDING = ModelStep(
    columns=("embedding",),
    doing="embedding",
    done="embedded",
    results="embeddings",
    count="embedded",
)


@feature_asset(
    deps=[raw_images], stored_in="pgvector", primary_key=["image_id", "model"], hnsw_by="model"
)
def image_embeddings(
    context: dg.AssetExecutionContext,
    image_embedder: ImageEmbedderResource,
    postgres: PostgresResource,
) -> Table:
    """L2-normalised DINOv2 vectors of the category's images not yet embedded by this model.

    Finished vectors are checkpointed as they come; a re-run after a failure resumes there.
    """
    model = image_embedder.model
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
        image_embedder.compute,
        images,
        f" (dim {model.dim})",
        damaged,
    )
    context.add_output_metadata({**step.metadata, "dim": model.dim})
    return step.table()
