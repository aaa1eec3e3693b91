"""The whole graph wired in one place: assets, checks, sensors, jobs and resources.

    link_file_sensor ─► category_pipeline, one run per category partition:
    raw_images ─┬─► image_prompts ─┬────► aligned_text_encoder   (group models, unpartitioned)
                │                  └─► prompt_embeddings
                └─► image_embeddings ─┬─► aligned_text_encoder
                                      └─► decoder_model
    aligned_text_encoder, decoder_model, image_embeddings, image_prompts ─► research_report

The edges are the asset objects' `deps` (test_definitions.py checks this picture).
"""

import dagster as dg

from featuregen_assets.assets.features import checks as feature_checks
from featuregen_assets.assets.features.image_embeddings import image_embeddings
from featuregen_assets.assets.features.image_prompts import image_prompts
from featuregen_assets.assets.features.prompt_embeddings import prompt_embeddings
from featuregen_assets.assets.ingest import checks as ingest_checks
from featuregen_assets.assets.ingest.raw_images import raw_images
from featuregen_assets.assets.ingest.sensors import link_file_sensor
from featuregen_assets.assets.models.aligned_text_encoder import aligned_text_encoder
from featuregen_assets.assets.models.decoder_model import decoder_model
from featuregen_assets.assets.models.research_report import research_report
from featuregen_assets.jobs import category_pipeline_job, training_job
from featuregen_assets.launch.executors import executor_for
from featuregen_assets.launch.placement import placed
from featuregen_assets.resources.io_manager import PGVECTOR_IO_MANAGER, PgvectorIOManager
from featuregen_assets.resources.models import (
    CaptionerResource,
    ComputeResource,
    ImageEmbedderResource,
    ModelsResource,
    SentenceEncoderResource,
)
from featuregen_assets.resources.postgres import PostgresResource
from featuregen_assets.resources.settings import settings_resource
from featuregen_assets.settings import Settings


def build_resources(settings: Settings | None = None) -> dict[str, object]:
    """The resources, taking their values from `settings` (default: FEATUREGEN_* variables
    read when a run starts)."""
    config = settings_resource(settings)
    postgres = PostgresResource(settings=config)
    models = ModelsResource(settings=config)
    compute = ComputeResource(settings=config)
    return {
        "settings": config,
        "postgres": postgres,
        "models": models,
        "compute": compute,
        PGVECTOR_IO_MANAGER: PgvectorIOManager(postgres=postgres),
        "image_embedder": ImageEmbedderResource(models=models, compute=compute),
        "captioner": CaptionerResource(models=models, compute=compute),
        "sentence_encoder": SentenceEncoderResource(models=models, compute=compute),
    }


automation_sensor = dg.AutomationConditionSensorDefinition(
    "featuregen_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    """The whole graph with resources built from `settings` (see `build_resources`). Where the
    steps run and what each asks a cluster for (`executor_for`, `placed`) are part of the
    definitions: taken from `settings`, else from FEATUREGEN_* variables read now."""
    placement = settings or Settings.from_env()
    return dg.Definitions(
        assets=placed(
            [
                raw_images,
                image_prompts,
                image_embeddings,
                prompt_embeddings,
                aligned_text_encoder,
                decoder_model,
                research_report,
            ],
            placement.compute.device,
        ),
        asset_checks=[
            ingest_checks.failure_rate_below_threshold,
            feature_checks.embeddings_complete_and_normalised,
            feature_checks.prompts_complete,
            feature_checks.text_vectors_complete_and_normalised,
        ],
        jobs=[category_pipeline_job, training_job],
        sensors=[link_file_sensor, automation_sensor],
        resources=build_resources(settings),
        executor=executor_for(placement),  # FEATUREGEN_EXECUTOR: Dagster's default, ray or k8s
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location Dagster loads (`dagster dev`, the daemon, each step process): the
    graph with this process's settings, built when Dagster asks for it, not at import."""
    return build_defs()
