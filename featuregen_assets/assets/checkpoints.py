"""The model steps' checkpoints: where they lie and which earlier runs stored their rows."""

from collections.abc import Callable, Sequence

import dagster as dg

from featuregen_assets.core.checkpoint import RowCheckpoint, step_directory


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
    resumed = checkpoint.resume({image_id for image_id, _ in pending}, _step_succeeded(context))
    done = checkpoint.keys()
    return checkpoint, [image for image in pending if image[0] not in done], resumed


def _step_succeeded(context: dg.AssetExecutionContext) -> Callable[[str], bool]:
    """Whether this asset's step succeeded in a run, so its rows were stored."""
    step_key = context.get_step_execution_context().step.key

    def succeeded(run_id: str) -> bool:
        stats = context.instance.get_run_step_stats(run_id, step_keys=[step_key])
        return any(stat.status is not None and stat.status.value == "SUCCESS" for stat in stats)

    return succeeded
