"""`aligned_text_encoder`: CLIP's text tower trained into the stored DINOv2 space (LiT).

torch and the training code are imported when the step runs, not with the definitions."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from featuregen_assets.assets.features.image_embeddings import image_embeddings
from featuregen_assets.assets.features.image_prompts import image_prompts
from featuregen_assets.assets.models.publishing import (
    TrainingConfig,
    model_asset,
    promote_if_better,
    publish,
    training_data,
    training_metadata,
)
from featuregen_assets.resources.models import ComputeResource, ModelsResource
from featuregen_assets.resources.postgres import PostgresResource

if TYPE_CHECKING:
    from featuregen_assets.core.training.alignment_training import TrainResult

# A new version is served by itself only when this beats the served version's (else: promote).
PROMOTION_METRIC = "validation_recall@5"
HEADLINE = (
    "recall@1",
    "recall@5",
    "recall@10",
    "median_rank",
    "chance_recall@5",
    "untrained_recall@5",
    "held_out_images",
    "samples_per_s",
)


class AlignedTextEncoderConfig(TrainingConfig):
    """Training settings; unset fields take `core.alignment.AlignmentConfig`'s defaults."""

    prompt_source: str = Field(
        default="both", description="Texts to train on: generated | link_caption | both."
    )
    recipe: str | None = Field(
        default=None,
        description="lit (train the tower) | talk2dino (frozen tower + MLP)"
        " | projection (frozen tower + linear).",
    )
    train_last_layers: int | None = Field(
        default=None, description="lit: train only the tower's last N layers."
    )
    loss: str | None = Field(default=None, description="infonce | siglip")
    weight_decay: float | None = None
    standardize_targets: bool | None = None
    validation_fraction: float | None = Field(
        default=None, description="Share of images kept for validation (tuning reads only it)."
    )
    test_phrases: list[str] | None = Field(
        default=None,
        description="Images with a text containing one of these phrases are test images"
        " (a compositional split: combinations never trained on).",
    )
    text_views: bool | None = Field(
        default=None,
        description="Also train on partial and reordered views of each caption (clauses,"
        " an object without its place or a modifier), so partial queries work.",
    )


@model_asset(image_embeddings, image_prompts)
def aligned_text_encoder(
    context: dg.AssetExecutionContext,
    config: AlignedTextEncoderConfig,
    postgres: PostgresResource,
    models: ModelsResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    """A text encoder whose vectors land next to matching images' DINOv2 vectors."""
    from featuregen_assets.core.training.alignment import AlignmentConfig
    from featuregen_assets.core.training.alignment_training import train_alignment
    from featuregen_assets.core.training.training_data import alignment_pairs
    from featuregen_assets.core.vision.compute import torch_threads

    embedding_model, pairs = training_data(
        postgres,
        config.embedding_model,
        lambda conn, model: alignment_pairs(conn, model, config.prompt_source),
        f"{config.prompt_source} prompts",
    )
    core = config.core_settings(exclude=frozenset({"prompt_source"}))
    if "test_phrases" in core:
        core["test_phrases"] = tuple(core["test_phrases"])
    settings = AlignmentConfig(device=compute.compute_settings().device, **core)
    tower = models.spec("text_tower")
    with torch_threads(config.torch_threads):
        result = train_alignment(
            pairs.texts,
            pairs.image_ids,
            pairs.vectors,
            tower.name_or_path,
            settings,
            log=context.log.info,
        )
    recorded = {
        **asdict(settings),
        "prompt_source": config.prompt_source,
        "text_tower": tower.model_id,
    }
    model = publish(
        postgres,
        context.asset_key.to_user_string(),
        embedding_model,
        recorded,
        result.metrics,
        lambda path: _save(result, path, context.log),
    )
    promotion = promote_if_better(postgres, model, PROMOTION_METRIC)
    context.log.info(promotion)
    return dg.MaterializeResult(
        metadata={
            **training_metadata(model, result.loss_curve, HEADLINE),
            "promoted": promotion.startswith("promoted"),
            "promotion": promotion,
        }
    )


def _save(result: "TrainResult", path: Path, log) -> None:
    """The encoder, beside it `split.json` (the train / validation / test image ids), and its
    query graph for search (on failure, search exports it on first load: logged)."""
    from featuregen_assets.core.text.graph_export import export_saved_text_encoder

    result.encoder.save(path, metrics=result.metrics)
    (path / "split.json").write_text(json.dumps(result.split.as_dict()))
    try:
        export_saved_text_encoder(result.encoder, path)
    except Exception as error:  # noqa: BLE001 - the model is saved; search retries the export
        log.warning(f"no query graph written (search exports it on first load): {error}")
