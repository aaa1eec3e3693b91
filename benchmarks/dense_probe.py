"""Dense probe on the synthetic demo data: a linear segmenter on DINOv2 patch tokens.

Research question 2 asks whether a detector/segmenter can be trained on DINOv2 features.
Each synthetic scene has a per-pixel mask of its shapes (one class per shape kind,
0 = background). A linear head on the patch tokens (logits upsampled to the pixels,
the DINOv2 paper's linear protocol) is scored by held-out mean IoU, and as a detector (each
connected region of one predicted class is a box) by precision and recall at IoU ≥ 0.5,
against the same head on raw pixel patches and against predicting background everywhere; the
head on the true class shares of each patch is the most this protocol can reach at its patch size.

    python benchmarks/dense_probe.py [--per-category 64] [--dinov2 PATH] [--device cpu]

Without ``--dinov2`` it uses the tiny profile (random weights: a check of the pipeline, not of
DINOv2); with a real checkpoint directory it answers the question.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featuregen_assets.core.training.dense_probe import (  # noqa: E402
    ProbeConfig,
    crop_mask,
    detection_precision_recall,
    mean_iou,
    patch_fractions,
    pixel_patches,
    regions,
    segment,
    train_probe,
)
from featuregen_assets.core.training.splits import held_out_mask  # noqa: E402
from featuregen_assets.core.vision.compute import ComputeSettings  # noqa: E402
from featuregen_assets.core.vision.embedding import EmbeddingSettings, ImageEmbedder  # noqa: E402
from featuregen_assets.core.vision.model_profiles import ModelSpec, resolve_models  # noqa: E402
from featuregen_assets.demo.scenes import CATEGORIES, CLASS_NAMES, generate_dataset  # noqa: E402
from featuregen_assets.demo.tiny_models import ensure_tiny_models  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dinov2", help="a DINOv2 checkpoint directory (default: tiny profile)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=ProbeConfig.epochs)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="featuregen-probe-"))
    scenes = generate_dataset(work / "data", CATEGORIES, args.per_category, args.seed)
    spec = (
        ModelSpec("image_embedder", args.dinov2, Path(args.dinov2).name)
        if args.dinov2
        else resolve_models("tiny", ensure_tiny_models(work / "home"))["image_embedder"]
    )
    compute = ComputeSettings(device=args.device, num_workers=0)
    embedder = ImageEmbedder(spec, compute, EmbeddingSettings())
    transform, patch = embedder.transform, embedder.model.config.patch_size

    paths = [work / "data" / "images" / s.filename for s in scenes]
    pixels = np.stack([transform.decode(p) for p in paths])
    masks = np.stack(
        [
            crop_mask(Image.open(work / "data" / "masks" / f"{s.name}.png"), transform)
            for s in scenes
        ]
    )
    tokens = np.concatenate(
        [
            embedder.patch_tokens(embedder.pixels_to_input(torch.from_numpy(pixels[i : i + 64])))
            .cpu()
            .numpy()
            for i in range(0, len(pixels), 64)
        ]
    )
    classes = len(CLASS_NAMES)
    targets = np.stack([patch_fractions(m, patch, classes) for m in masks])
    ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    held = held_out_mask(ids, 0.2)
    train, test = np.flatnonzero(~held), np.flatnonzero(held)
    size = masks.shape[1:]
    config = ProbeConfig(epochs=args.epochs)
    true_boxes = [regions(mask) for mask in masks[test]]

    rows = []
    for name, features in (
        ("DINOv2 patch tokens", tokens),
        ("raw pixel patches", pixel_patches(pixels, patch)),
        ("true class shares per patch (ceiling of the protocol)", targets),
    ):
        t = time.perf_counter()
        probe = train_probe(features[train], targets[train], config)
        seconds = time.perf_counter() - t
        predicted = segment(probe, features[test], size)
        test_miou, ious = mean_iou(predicted, masks[test], classes)
        objects = mean_iou(predicted > 0, masks[test] > 0, 2)[0]
        train_miou, _ = mean_iou(segment(probe, features[train], size), masks[train], classes)
        found = detection_precision_recall(predicted, true_boxes)
        rows.append(
            (name, features.shape[-1], test_miou, objects, found, train_miou, ious, seconds)
        )
    nothing = np.zeros_like(masks[test])
    background = mean_iou(nothing, masks[test], classes)
    objects = mean_iou(nothing > 0, masks[test] > 0, 2)[0]
    found = detection_precision_recall(nothing, true_boxes)
    rows.append(
        ("background everywhere", 0, background[0], objects, found, float("nan"), background[1], 0)
    )

    model = args.dinov2 or "tiny profile (random-weight DINOv2, hidden 64, 4 layers)"
    lines = [
        f"Dense probe, {model}: {len(scenes)} synthetic scenes ({len(train)} train, "
        f"{len(test)} held out), {size[0]}×{size[1]} crops, {tokens.shape[1]}×{tokens.shape[2]} "
        f"patches of {patch} px; linear head on class shares per patch, weighted by "
        f"1/sqrt(share), full-batch AdamW lr {config.lr}, "
        f"{config.epochs} epochs. Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}; whole run {time.perf_counter() - started:.0f} s.",
        "",
        "| features | dim | held-out mIoU | held-out object/background mIoU "
        "| held-out boxes P / R @ IoU 0.5 | train mIoU | "
        + " | ".join(f"IoU {c}" for c in CLASS_NAMES)
        + " | train s |",
        "|---|---|---|---|---|---|" + "---|" * len(CLASS_NAMES) + "---|",
    ]
    for name, dim, test_miou, objects, (precision, recall), train_miou, ious, seconds in rows:
        lines.append(
            f"| {name} | {dim} | {test_miou:.3f} | {objects:.3f} | "
            f"{precision:.3f} / {recall:.3f} | {train_miou:.3f} | "
            + " | ".join(f"{v:.2f}" for v in ious)
            + f" | {seconds:.1f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
