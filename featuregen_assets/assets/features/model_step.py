"""The checkpointed model step that the feature assets run, and their one asset decorator.

missing rows → resume the checkpoint failed runs left → compute the rest with progress lines →
checkpoint each finished row → log the failures → metadata → the `Table` the IO manager
stores (it deletes the checkpoint once the rows are committed).
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from featuregen_assets.core.ingest.store_check import damaged_report
from featuregen_assets.core.runtime.checkpoint import RowCheckpoint, step_directory
from featuregen_assets.core.runtime.progress import ProgressReporter, track
from featuregen_assets.core.store.table import Table
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.io_manager import PGVECTOR_IO_MANAGER
from featuregen_assets.resources.models import GPU_POOL, ComputeResource, image_paths

Compute = Callable[[list[Any]], Iterable[tuple[Any, ...]]]
"""A model's batch call over its inputs (image files, texts). It yields `(index, value, error,
*more)` per input: `value` None when it failed (`error` says why); the row stored is
`(value, *more)`."""


def feature_asset(
    *,
    deps: Sequence[dg.AssetsDefinition],
    stored_in: str,
    primary_key: Sequence[str],
    hnsw_by: str | None = None,
) -> Callable[..., dg.AssetsDefinition]:
    """The decorator of a feature asset: per category, eager, in the GPU pool, its `Table`
    written by the pgvector IO manager (`primary_key`; `hnsw_by`: one HNSW index per value of
    that column) into the category's images (`raw_images.category`). `stored_in`: the
    kind beside pytorch (postgres, pgvector)."""
    metadata: dict[str, Any] = {
        "partition_expr": "raw_images.category",
        "primary_key": list(primary_key),
    }
    if hnsw_by is not None:
        metadata["hnsw_by"] = hnsw_by
    return dg.asset(
        partitions_def=category_partitions,
        deps=deps,
        group_name="features",
        kinds={"pytorch", stored_in},
        pool=GPU_POOL,
        io_manager_key=PGVECTOR_IO_MANAGER,
        automation_condition=dg.AutomationCondition.eager(),
        metadata=metadata,
    )


@dataclass(frozen=True)
class ModelStep:
    """What a feature asset's model step computes, and the words its run log uses."""

    columns: tuple[str, ...]  # the row's columns after its key
    doing: str  # "embedding"
    done: str  # "embedded": what a failed image is logged as not
    results: str  # "embeddings": the progress line's label
    count: str  # "embedded": the metadata key of how many rows the step holds
    unit: str = "images"  # what the pending items are
    key: str = "image_id"  # the checkpoint's key column: what identifies a pending item
    # The model's inputs from the pending `(key, item)` pairs: image files by default.
    inputs: Callable[[list[tuple[str, Any]]], list[Any]] = image_paths

    def run(
        self,
        context: dg.AssetExecutionContext,
        model: str,
        pending: list[tuple[str, Any]],
        compute: Compute,
        resource: ComputeResource,
        images: int,
        detail: str = "",
        damaged: Sequence[str] = (),
    ) -> "StepRows":
        """Compute the `pending` `(key, item)` pairs (`(image_id, path)` images by default)
        of the partition's `images` (its count of what the step covers), resuming the
        checkpoint of `model`'s earlier failed runs (where and how often the compute
        `resource` says). `damaged` names the stored files found damaged and left out
        (`store_check.intact`)."""
        if damaged:
            context.log.warning(damaged_report(damaged))
        asset = context.asset_key.to_user_string()
        checkpoint = RowCheckpoint(
            step_directory(resource.checkpoints_dir(), asset, context.partition_key, model),
            (self.key, *self.columns),
            run_id=context.run_id,
            every_s=resource.checkpoint_interval_s(),
        )
        resumed = checkpoint.resume({key for key, _ in pending})
        held = checkpoint.keys()
        todo = [image for image in pending if image[0] not in held]
        context.log.info(
            f"{self.doing} {len(todo)} {self.unit} with {model}{detail}"
            + (f" ({resumed} more resumed from a checkpoint)" if resumed else "")
        )
        failed = 0
        report = ProgressReporter(
            f"{context.partition_key} {self.results}",
            context.log.info,
            unit=self.unit,
            bar=resource.settings.progress_bar,
        )
        results = compute(self.inputs(todo))
        for index, value, error, *more in track(results, len(todo), _failed, report):
            key, item = todo[index]
            if value is None:
                failed += 1
                context.log.warning(f"not {self.done}: {item}: {error}")
                continue
            checkpoint.add((key, value, *more))
        checkpoint.flush()
        return StepRows(self, model, checkpoint.table(), resumed, failed, images, len(damaged))


@dataclass(frozen=True)
class StepRows:
    """The rows a model step holds for the IO manager: computed now or resumed."""

    step: ModelStep
    model: str
    rows: Table  # the step's key and columns
    resumed: int
    failed: int
    images: int  # the partition's downloaded images
    damaged: int = 0  # stored files found damaged and left out

    @property
    def metadata(self) -> dict[str, Any]:
        """The step's output metadata; `dagster/row_count`: the partition's images that have
        a row from this model once these rows are stored (all but the failed ones)."""
        return {
            "model": self.model,
            self.step.count: len(self.rows),
            "resumed": self.resumed,
            "failed": self.failed,
            "damaged_files": self.damaged,
            "dagster/row_count": self.images - self.failed,
        }

    def table(self, **constants: Any) -> Table:
        """The rows as the feature table's: `image_id`, `model`, the `constants`, the rest."""
        n = len(self.rows)
        columns = dict(self.rows.columns)
        return Table(
            {
                "image_id": columns.pop("image_id"),
                "model": [self.model] * n,
                **{name: [value] * n for name, value in constants.items()},
                **columns,
            }
        )


def _failed(result: tuple[Any, ...]) -> bool:
    return result[1] is None
