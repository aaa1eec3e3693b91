"""Jobs: the per-category pipeline that the sensor and the CLI launch."""

import dagster as dg

from featuregen_assets.partitions import category_partitions

CATEGORY_ASSETS = dg.AssetSelection.groups("ingest", "features")

category_pipeline_job = dg.define_asset_job(
    "category_pipeline",
    selection=CATEGORY_ASSETS,
    partitions_def=category_partitions,
    description="Download, caption and embed the images of one category's link file.",
)
