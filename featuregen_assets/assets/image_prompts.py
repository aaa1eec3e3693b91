"""`image_prompts`: a Qwen2-VL caption per image, plus the captions its link file came with."""

import dagster as dg

from featuregen_assets.core.feature_store import link_captions, missing_prompts
from featuregen_assets.core.table import Table
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.models import CaptionerResource, image_paths
from featuregen_assets.resources.postgres import PostgresResource

GENERATED = "generated"
LINK_CAPTION = "link_caption"
LINK_FILE_MODEL = "link-file"


@dg.asset(
    partitions_def=category_partitions,
    deps=["raw_images"],
    group_name="features",
    kinds={"pytorch", "postgres"},
    pool="gpu",
    io_manager_key="pgvector_io_manager",
    automation_condition=dg.AutomationCondition.eager(),
    metadata={
        "partition_expr": "raw_images.category",
        "primary_key": ["image_id", "model", "source"],
    },
)
def image_prompts(
    context: dg.AssetExecutionContext, captioner: CaptionerResource, postgres: PostgresResource
) -> Table:
    """Search prompts of the category's images not yet captioned by this model."""
    model = captioner.captioner
    category = context.partition_key
    with postgres.connection() as conn:
        pending = missing_prompts(conn, category, model.key, GENERATED)
        captions = link_captions(conn, category)
    context.log.info(f"captioning {len(pending)} images with {model.key}")

    rows: list[tuple[str, str, str, str, bool]] = [
        (image_id, LINK_FILE_MODEL, LINK_CAPTION, caption, False) for image_id, caption in captions
    ]
    failures = 0
    for index, caption, error, truncated in model.caption_files(image_paths(pending)):
        image_id = pending[index][0]
        if caption is None:
            failures += 1
            context.log.warning(f"not captioned: {image_id}: {error}")
            continue
        rows.append((image_id, model.key, GENERATED, caption, truncated))

    generated = len(rows) - len(captions)
    context.add_output_metadata(
        {
            "model": model.key,
            "generated": generated,
            "link_captions": len(captions),
            "failed": failures,
            "hit_max_new_tokens": sum(1 for row in rows if row[4]),
        }
    )
    names = ("image_id", "model", "source", "prompt", "truncated")
    return Table({name: [row[i] for row in rows] for i, name in enumerate(names)})
