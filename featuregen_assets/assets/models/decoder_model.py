"""`decoder_model`: a convolutional decoder from a stored DINOv2 vector back to the image.

torch and the training code are imported when the step runs, not with the definitions."""

from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

import dagster as dg
import psycopg
from pydantic import Field

from featuregen_assets.assets.features.image_embeddings import image_embeddings
from featuregen_assets.assets.models.publishing import (
    TrainingConfig,
    model_asset,
    publish,
    training_data,
    training_metadata,
)
from featuregen_assets.core.ingest.store_check import damaged_report, intact
from featuregen_assets.core.training.plots import markdown_image
from featuregen_assets.core.training.training_data import ImageSet, embedded_images
from featuregen_assets.resources.models import ImageEmbedderResource
from featuregen_assets.resources.postgres import PostgresResource

HEADLINE = (
    "psnr",
    "mean_image_psnr",
    "psnr_gain_db",
    "ssim",
    "reencoded_cosine",
    "reencoded_top1",
    "chance_top1",
    "held_out_images",
)


class DecoderModelConfig(TrainingConfig):
    """Training settings; unset fields take `core.decoder.DecoderConfig`'s defaults."""

    image_size: int | None = Field(default=None, description="Output side, a power of two.")
    base_channels: int | None = None
    validation_fraction: float | None = Field(
        default=None, description="Share of images kept for validation (early stopping reads it)."
    )
    patience: int | None = Field(
        default=None,
        description="Stop after this many epochs without a better validation PSNR (0: never).",
    )
    min_delta_db: float | None = Field(
        default=None, description="The least validation PSNR gain, in dB, that counts as better."
    )


@model_asset(image_embeddings)
def decoder_model(
    context: dg.AssetExecutionContext,
    config: DecoderModelConfig,
    postgres: PostgresResource,
    image_embedder: ImageEmbedderResource,
) -> dg.MaterializeResult:
    """Decoder trained on every embedded image; judged by PSNR/SSIM and by re-encoding."""
    from featuregen_assets.core.training.decoder import DecoderConfig, encoder_for, train_decoder
    from featuregen_assets.core.vision.compute import torch_threads

    embedding_model, images = training_data(
        postgres,
        config.embedding_model,
        partial(_images_on_disk, warn=context.log.warning),
        "images",
    )
    reencoder = image_embedder.model
    if reencoder.key != embedding_model:
        context.log.warning(
            f"feature consistency skipped: the configured image embedder ({reencoder.key}) did not"
            f" make the stored vectors ({embedding_model})"
        )
    settings = DecoderConfig(device=reencoder.device.type, **config.core_settings())
    with torch_threads(config.torch_threads):
        result = train_decoder(
            images.vectors,
            images.paths,
            images.image_ids,
            settings,
            encode=encoder_for(reencoder) if reencoder.key == embedding_model else None,
            log=context.log.info,
        )
    recorded = asdict(settings)

    def save(path: Path) -> None:
        result.decoder.save(path, metrics=result.metrics)
        if result.grid is not None:
            result.grid.save(path / "reconstructions.png")

    name = context.asset_key.to_user_string()
    model = publish(postgres, name, embedding_model, recorded, result.metrics, save)
    metadata = training_metadata(model, result.loss_curve, HEADLINE)
    if result.grid is not None:
        metadata["reconstructions"] = dg.MetadataValue.md(
            "Top: held-out originals. Bottom: decoded from their DINOv2 vectors.\n\n"
            + markdown_image(result.grid, "originals and reconstructions")
        )
    return dg.MaterializeResult(metadata=metadata)


def _images_on_disk(
    conn: psycopg.Connection, embedding_model: str, *, warn: Callable[[str], None]
) -> ImageSet:
    """The embedded images whose stored file is intact; the others are named in one warning
    (and fetched again by their category's next raw_images run)."""
    images = embedded_images(conn, embedding_model)
    kept, damaged = intact(conn, list(zip(images.image_ids, images.paths, strict=True)))
    if damaged:
        warn(damaged_report(damaged))
    return images.only({image_id for image_id, _ in kept})
