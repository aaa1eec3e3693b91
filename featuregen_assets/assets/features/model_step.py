"""The model steps' checkpoints, resumed where the step's last failed run left off."""

from collections.abc import Sequence

import dagster as dg

from featuregen_assets.core.runtime.checkpoint import RowCheckpoint, step_directory


def resume_checkpoint(
    context: dg.AssetExecutionContext,
    model_key: str,
    names: Sequence[str],
    pending: list[tuple[str, str]],
    every_s: float,
) -> tuple[RowCheckpoint, list[tuple[str, str]], int]:
    """This step's checkpoint, holding the rows of `pending` `(image_id, path)` images that
    failed runs left; the pending images still to compute; how many rows it took back."""
    checkpoint = RowCheckpoint(
        step_directory(context.asset_key.to_user_string(), context.partition_key, model_key),
        names,
        run_id=context.run_id,
        every_s=every_s,
    )
    resumed = checkpoint.resume({image_id for image_id, _ in pending})
    done = checkpoint.keys()
    return checkpoint, [image for image in pending if image[0] not in done], resumed
