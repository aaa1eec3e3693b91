"""`featuregen report --protocol …`: a standard protocol on the configured models, outside the
store (the dataset's own files and split), written as a research report."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from featuregen_assets.assets.models.publishing import new_version
from featuregen_assets.core.runtime import paths
from featuregen_assets.core.training.alignment import AlignmentConfig
from featuregen_assets.core.training.dense_probe import patch_inputs
from featuregen_assets.core.vision.embedding import ImageEmbedder
from featuregen_assets.research.ade20k import Ade20kConfig, run_ade20k_linear
from featuregen_assets.research.protocols import protocol_answers, run_caption_protocol
from featuregen_assets.research.report import write_report
from featuregen_assets.research.weights import is_tiny, licence_answer, weights_record
from featuregen_assets.settings import Settings

NAME = "research_report"
ADE20K = "ade20k-linear"


def run_protocol_report(args: argparse.Namespace, settings: Settings) -> Path:
    """Run `args.protocol` on `args.dataset` (and `args.images`); the written report.md."""
    if args.dataset is None or (args.images is None and args.protocol != ADE20K):
        raise SystemExit(f"--protocol {args.protocol} needs --dataset FILE and --images DIR")
    if args.protocol == ADE20K:
        return _ade20k_report(args, settings)
    tower = settings.model("text_tower").name_or_path
    embedder = ImageEmbedder(settings.model("image_embedder"), settings.compute, settings.embedding)

    def embed(files: list[Path]) -> np.ndarray:
        vectors = np.zeros((len(files), 0), np.float32)
        for index, vector, error in embedder.embed_files(files):
            if vector is None:
                raise SystemExit(f"{files[index]}: {error}")
            if not vectors.shape[1]:
                vectors = np.zeros((len(files), len(vector)), np.float32)
            vectors[index] = vector
        return vectors

    overrides = {k: v for k, v in (("batch_size", args.batch_size), ("epochs", args.epochs)) if v}
    config = dataclasses.replace(AlignmentConfig(), **overrides)
    try:
        run = run_caption_protocol(
            args.protocol, args.dataset, args.images, embed, tower, config, args.test_size
        )
    finally:
        embedder.close()
    weights = weights_record(embedder.key, tower, False)
    context = {"weights": weights, "embedding_model": embedder.key, **run.context}
    answers = [licence_answer(weights), *protocol_answers(run)]
    directory = (
        paths.artifacts_dir(settings.home) / NAME / f"{args.protocol}-{new_version(context)}"
    )
    report, _ = write_report(directory, run.measurements, context, answers, {})
    return report


def _ade20k_report(args: argparse.Namespace, settings: Settings) -> Path:
    """The ADE20K linear probe on the configured DINOv2's patch tokens."""
    embedder = ImageEmbedder(settings.model("image_embedder"), settings.compute, settings.embedding)
    config = Ade20kConfig(**({"epochs": args.epochs} if args.epochs else {}))
    try:
        measurements, found = run_ade20k_linear(args.dataset, patch_inputs(embedder), config)
    finally:
        embedder.close()
    weights = {"embedding_model": {"model": embedder.key, "pretrained": not is_tiny(embedder.key)}}
    context = {"weights": weights, "embedding_model": embedder.key, **found}
    [miou] = measurements
    answers = [
        licence_answer(weights),
        f"ADE20K linear probe: mIoU {100 * miou.value:.1f} [{100 * miou.ci_low:.1f},"
        f" {100 * miou.ci_high:.1f}] over {found['classes_scored']} classes on"
        f" {miou.n} validation images (through the embedder's crop).",
        f"Published anchor: {found['anchors']}.",
    ]
    directory = paths.artifacts_dir(settings.home) / NAME / f"{ADE20K}-{new_version(context)}"
    report, _ = write_report(directory, measurements, context, answers, {})
    return report
