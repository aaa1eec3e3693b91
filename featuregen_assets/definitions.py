"""The whole graph wired in one place: assets, checks, sensors, jobs and resources."""

import os

import dagster as dg

from featuregen_assets import checks
from featuregen_assets.assets.image_embeddings import image_embeddings
from featuregen_assets.assets.image_prompts import image_prompts
from featuregen_assets.assets.raw_images import raw_images
from featuregen_assets.jobs import category_pipeline_job
from featuregen_assets.resources.io_manager import PgvectorIOManager
from featuregen_assets.resources.models import (
    CaptionerResource,
    ComputeResource,
    EmbedderResource,
    ModelsResource,
)
from featuregen_assets.resources.postgres import PostgresResource
from featuregen_assets.sensors import link_file_sensor


def build_resources() -> dict[str, object]:
    """Resources configured from FEATUREGEN_* environment variables."""
    postgres = PostgresResource(
        url=os.environ.get("FEATUREGEN_DATABASE_URL") or None,
        home=os.environ.get("FEATUREGEN_HOME") or None,
    )
    models = ModelsResource(
        profile=os.environ.get("FEATUREGEN_MODELS", "real"),
        dinov2=os.environ.get("FEATUREGEN_DINOV2", "facebook/dinov2-base"),
    )
    compute = ComputeResource(
        device=os.environ.get("FEATUREGEN_DEVICE", "auto"),
        batch_size=int(os.environ.get("FEATUREGEN_BATCH_SIZE", "32")),
        num_workers=int(os.environ.get("FEATUREGEN_NUM_WORKERS", "2")),
    )
    return {
        "postgres": postgres,
        "pgvector_io_manager": PgvectorIOManager(postgres=postgres),
        "embedder": EmbedderResource(
            models=models,
            compute=compute,
            pooling=os.environ.get("FEATUREGEN_POOLING", "cls"),
        ),
        "captioner": CaptionerResource(models=models, compute=compute),
    }


automation_sensor = dg.AutomationConditionSensorDefinition(
    "featuregen_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

defs = dg.Definitions(
    assets=[raw_images, image_prompts, image_embeddings],
    asset_checks=[
        checks.failure_rate_below_threshold,
        checks.embeddings_complete_and_normalised,
        checks.prompts_complete,
    ],
    jobs=[category_pipeline_job],
    sensors=[link_file_sensor, automation_sensor],
    resources=build_resources(),
)
