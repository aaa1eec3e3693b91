"""`image_prompts`: a Qwen2-VL caption per image, plus the captions its link file came with."""

import dagster as dg

from featuregen_assets.assets.features.model_step import resume_checkpoint
from featuregen_assets.core.runtime.progress import ProgressReporter, track
from featuregen_assets.core.store.feature_store import link_captions, missing_prompts
from featuregen_assets.core.store.table import Table
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.models import GPU_POOL, CaptionerResource, image_paths
from featuregen_assets.resources.postgres import PostgresResource

GENERATED = "generated"
LINK_CAPTION = "link_caption"
LINK_FILE_MODEL = "link-file"


@dg.asset(
    partitions_def=category_partitions,
    deps=["raw_images"],
    group_name="features",
    kinds={"pytorch", "postgres"},
    pool=GPU_POOL,
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
    """Search prompts of the category's images not yet captioned by this model, and the
    link files' captions not yet stored as they are.

    Finished captions are checkpointed as they come; a re-run after a failure resumes there.
    """
    model = captioner.captioner
    category = context.partition_key
    with postgres.connection() as conn:
        pending = missing_prompts(conn, category, model.key, GENERATED)
        captions = link_captions(conn, category, LINK_FILE_MODEL, LINK_CAPTION)
    checkpoint, todo, resumed = resume_checkpoint(
        context,
        model.key,
        ("image_id", "prompt", "truncated"),
        pending,
        captioner.compute.checkpoint_interval_s(),
    )
    context.log.info(
        f"captioning {len(todo)} images with {model.key}"
        + (f" ({resumed} more resumed from a checkpoint)" if resumed else "")
    )

    failures = 0
    report = ProgressReporter(f"{category} captions", context.log.info, unit="images")
    results = model.caption_files(image_paths(todo))
    for index, caption, error, truncated in track(results, len(todo), _failed, report):
        image_id = todo[index][0]
        if caption is None:
            failures += 1
            context.log.warning(f"not captioned: {image_id}: {error}")
            continue
        checkpoint.add((image_id, caption, truncated))
    checkpoint.flush()

    generated = checkpoint.table()
    context.add_output_metadata(
        {
            "model": model.key,
            "generated": len(generated),
            "resumed": resumed,
            "link_captions": len(captions),
            "failed": failures,
            "hit_max_new_tokens": sum(generated.columns["truncated"]),
            "batch_size": model.batch_limit,
        }
    )
    return Table(
        {
            "image_id": [image_id for image_id, _ in captions] + generated.columns["image_id"],
            "model": [LINK_FILE_MODEL] * len(captions) + [model.key] * len(generated),
            "source": [LINK_CAPTION] * len(captions) + [GENERATED] * len(generated),
            "prompt": [caption for _, caption in captions] + generated.columns["prompt"],
            "truncated": [False] * len(captions) + generated.columns["truncated"],
        }
    )


def _failed(result: tuple[int, str | None, str | None, bool]) -> bool:
    return result[1] is None
