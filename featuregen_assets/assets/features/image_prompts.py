"""`image_prompts`: a Qwen2-VL caption per image, plus the captions its link file came with."""

import dagster as dg

from featuregen_assets.assets.features.model_step import ModelStep, feature_asset
from featuregen_assets.assets.ingest.raw_images import raw_images
from featuregen_assets.core.ingest.store_check import intact
from featuregen_assets.core.store.feature_store import image_count, link_captions, missing_prompts
from featuregen_assets.core.store.table import Table
from featuregen_assets.resources.models import CaptionerResource
from featuregen_assets.resources.postgres import PostgresResource

GENERATED = "generated"
LINK_CAPTION = "link_caption"
LINK_FILE_MODEL = "link-file"  # link captions are stored as model `link-file:<category>`
CAPTIONING = ModelStep(
    columns=("prompt", "truncated"),
    doing="captioning",
    done="captioned",
    results="captions",
    count=GENERATED,
)


@feature_asset(deps=[raw_images], stored_in="postgres", primary_key=["image_id", "model", "source"])
def image_prompts(
    context: dg.AssetExecutionContext, captioner: CaptionerResource, postgres: PostgresResource
) -> Table:
    """Search prompts of the category's images not yet captioned by this model, and the
    link files' captions not yet stored as they are.

    Finished captions are checkpointed as they come; a re-run after a failure resumes there.
    """
    model = captioner.model
    category = context.partition_key
    with postgres.connection() as conn:
        pending, damaged = intact(
            conn, missing_prompts(conn, category, model.key, GENERATED), category
        )
        captions = link_captions(conn, category, link_file_model(category), LINK_CAPTION)
        images = image_count(conn, category)
    step = CAPTIONING.run(
        context,
        model.key,
        pending,
        model.caption_files,
        captioner.compute,
        images,
        damaged=damaged,
    )
    generated = step.table(source=GENERATED)
    context.add_output_metadata(
        {
            **step.metadata,
            "link_captions": len(captions),
            "hit_max_new_tokens": sum(generated.columns["truncated"]),
            "batch_size": model.batch_limit,
        }
    )
    n = len(captions)
    links = Table(
        {
            "image_id": [image_id for image_id, _ in captions],
            "model": [link_file_model(category)] * n,
            "source": [LINK_CAPTION] * n,
            "prompt": [caption for _, caption in captions],
            "truncated": [False] * n,
        }
    )
    return Table.concat([links, generated])


def link_file_model(category: str) -> str:
    """The `model` of a category's link captions: one row per category and image, so a
    category never overwrites another's caption of the same image (schema migration 5)."""
    return f"{LINK_FILE_MODEL}:{category}"
