"""Jobs: the per-category pipeline that the sensor and the CLI launch, and the trainings."""

import dagster as dg

from featuregen_assets.partitions import category_partitions

CATEGORY_ASSETS = dg.AssetSelection.groups("ingest", "features")

category_pipeline_job = dg.define_asset_job(
    "category_pipeline",
    selection=CATEGORY_ASSETS,
    partitions_def=category_partitions,
    description="Download, caption and embed the images of one category's link file.",
)

MODEL_ASSETS = ("aligned_text_encoder", "decoder_model")

training_job = dg.define_asset_job(
    "train_models",
    selection=dg.AssetSelection.groups("models"),
    description="Train the text encoder and the decoder on every stored category.",
)
