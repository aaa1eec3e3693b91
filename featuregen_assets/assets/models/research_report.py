"""`research_report`: every text-to-image and decoder method beside fair baselines, with
intervals; report.md + report.json under FEATUREGEN_HOME/artifacts/research_report/<version>/.

torch and the research code are imported when the step runs, not with the definitions."""

import re
from pathlib import Path

import dagster as dg
from pydantic import Field

from featuregen_assets.assets.features.image_embeddings import image_embeddings
from featuregen_assets.assets.features.image_prompts import image_prompts
from featuregen_assets.assets.models.aligned_text_encoder import aligned_text_encoder
from featuregen_assets.assets.models.decoder_model import decoder_model
from featuregen_assets.assets.models.publishing import model_asset, new_version
from featuregen_assets.core.runtime import paths
from featuregen_assets.core.store.registry import latest_model
from featuregen_assets.core.training.plots import markdown_image
from featuregen_assets.research.variant_names import (
    DEFAULT_VARIANTS,
    VARIANTS,
    parse_variants,
)
from featuregen_assets.resources.models import ImageEmbedderResource, ModelsResource
from featuregen_assets.resources.postgres import PostgresResource

NAME = "research_report"


class ResearchReportConfig(dg.Config):
    """What to compare on."""

    query_file: str | None = Field(
        default=None,
        description="JSON-lines query sets with their truth (`featuregen demo` passes its"
        " own; default: template queries from the test images' captions).",
    )
    seeds: int = Field(
        default=1, description="Text-encoder trainings to average (the registered one is seed 0)."
    )
    sentence_encoder: bool = Field(
        default=True, description="Caption-embedding baselines with all-MiniLM-L6-v2."
    )
    probe_masks: str | None = Field(
        default=None,
        description="Folder of label masks for the dense probes, `<image URL file stem>.png`"
        " (`featuregen demo` passes its own; default: no probes).",
    )
    probe_records: str | None = Field(
        default=None,
        description="Folder of scene records for the probes' box rows, `<image URL file"
        " stem>.json` with `width`, `height` and `objects` [{box: [x0, y0, x1, y1], class_id}]"
        " (`featuregen demo` passes its own; default: no box rows). Records that also name each"
        " object's position, colour, shape and size and the category add the truth read-outs"
        " and attribute probes.",
    )
    variants: list[str] = Field(
        default=list(DEFAULT_VARIANTS),
        description="Learned variants trained on the same split beside the registered"
        f" encoder, each `seeds` times: {', '.join(f'{k} ({v})' for k, v in VARIANTS.items())}.",
    )
    decoder_epochs: int | None = Field(
        default=None,
        gt=0,
        description="Epochs of the decoders the report trains itself, side by side: from the"
        " stored vectors, from the 16 px original (their positive control) and from patch tokens"
        " (default: the registered decoder's).",
    )
    torch_threads: int | None = Field(
        default=1,
        description="torch's intra-op threads while the report trains and embeds (None: torch's"
        " default). Its trainings are small: on 2 vCPUs shared at load 10, a tiny LiT's 2 epochs"
        " took 19 CPU s / 100 s with 2 threads and 1 CPU s / 5 s with 1.",
    )
    variant_epochs: int | None = Field(
        default=None,
        gt=0,
        description="Epochs of each variant's training (default: the text encoder's). With"
        " fewer, train `lit` too: the encoder's recipe at the same budget, their reference.",
    )


def _inputs(config: ResearchReportConfig) -> tuple[Path | None, Path | None, Path | None]:
    """The query file, masks folder and records folder the config names (None where unset);
    a named one that is missing fails the step."""
    named = (
        ("query_file", config.query_file, Path.is_file),
        ("probe_masks", config.probe_masks, Path.is_dir),
        ("probe_records", config.probe_records, Path.is_dir),
    )
    found = []
    for field, value, exists in named:
        path = Path(value) if value else None
        if path is not None and not exists(path):
            kind = "file" if exists is Path.is_file else "folder"
            raise dg.Failure(f"research_report config {field}: no {kind} {path}")
        found.append(path)
    return found[0], found[1], found[2]


def _slug(key: str) -> str:
    """A model key as one folder name."""
    return re.sub(r"[^A-Za-z0-9@._-]+", "-", key).strip("-")


@model_asset(aligned_text_encoder, decoder_model, image_embeddings, image_prompts)
def research_report(
    context: dg.AssetExecutionContext,
    config: ResearchReportConfig,
    postgres: PostgresResource,
    models: ModelsResource,
    image_embedder: ImageEmbedderResource,
) -> dg.MaterializeResult:
    """The research answer: each method and baseline on the same test split, 95 % intervals."""
    from featuregen_assets.core.training.decoder import encoder_for
    from featuregen_assets.core.training.dense_probe import patch_inputs
    from featuregen_assets.core.vision.compute import torch_threads
    from featuregen_assets.research.comparison import run_comparison
    from featuregen_assets.research.dense import ProbeData
    from featuregen_assets.research.patch_grids import PatchGridFiles
    from featuregen_assets.research.report import headline_table, write_report

    with postgres.connection() as conn:
        encoder_model = latest_model(conn, "aligned_text_encoder")
        decoder_model = latest_model(conn, "decoder_model")
        if encoder_model is None:
            raise dg.Failure(
                "no aligned_text_encoder registered: train it first (featuregen train text-encoder)"
            )
        if not (encoder_model.path / "split.json").is_file():
            raise dg.Failure(f"{encoder_model.path} records no split: retrain the text encoder")
        if (
            decoder_model is not None
            and decoder_model.embedding_model != encoder_model.embedding_model
        ):
            decoder_model = None
        reencoder = image_embedder.model
        same_model = reencoder.key == encoder_model.embedding_model
        query_file, masks, records = _inputs(config)
        with torch_threads(config.torch_threads):
            outcome = run_comparison(
                conn,
                encoder_model,
                decoder_model,
                models.spec("text_tower").name_or_path,
                query_file,
                encoder_for(reencoder) if same_model else None,
                seeds=config.seeds,
                use_sentence_encoder=config.sentence_encoder,
                variants=parse_variants(config.variants),
                encode_pooled=encoder_for(reencoder, "cls+mean")
                if same_model and reencoder.settings.pooling == "cls"
                else None,
                probe=ProbeData(patch_inputs(reencoder), masks, records)
                if same_model and masks is not None
                else None,
                log=context.log.info,
                variant_epochs=config.variant_epochs,
                patch_grids=PatchGridFiles(
                    patch_inputs(reencoder),
                    paths.patch_grids_dir(postgres.settings.home) / _slug(reencoder.key),
                )
                if same_model
                else None,
                decoder_epochs=config.decoder_epochs,
            )
    version = new_version(outcome.context)
    directory = paths.artifacts_dir(postgres.settings.home) / NAME / version
    report_md, report_json = write_report(
        directory, outcome.measurements, outcome.context, outcome.answers, outcome.images
    )
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "path": dg.MetadataValue.path(str(directory)),
            "report": dg.MetadataValue.path(str(report_md)),
            "rows": len(outcome.measurements),
            "answers": dg.MetadataValue.md("\n".join(f"- {a}" for a in outcome.answers)),
            "headline": dg.MetadataValue.md(headline_table(outcome.measurements)),
            "plots": dg.MetadataValue.md(
                "\n\n".join(markdown_image(image, name) for name, image in outcome.images.items())
            ),
            "split_hashes": dg.MetadataValue.json(outcome.context["split_hashes"]),
        }
    )
