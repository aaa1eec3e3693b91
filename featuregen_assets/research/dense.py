"""Question 2, dense: can a segmenter be trained on the patch tokens? With the controls that
tell "the features lack it" from "the probe is too weak".

The probe (`core/training/dense_probe`: trained on the training images' per-patch class
shares, logits upsampled to the pixels) on the patch tokens, beside the same probe on raw
pixel patches; a positive control, the probe on features known to hold the answer (each
patch's true class shares plus Gaussian noise), which has to come near the ceiling (the probe
on the noise-free shares, the most this protocol can reach at its patch size); and the tokens
and the control again with a non-linear head (not the raw pixels: 588 inputs a patch make it
minutes on a CPU). Foreground IoU (any object vs background) and mIoU over the classes,
pooled over the test images, with 95 % bootstrap intervals over images. As a detector (no box
head): each connected region of one class in a probe's predicted labels is a box, scored by
class-aware precision and recall at IoU 0.5 against the scene records' object boxes (mapped
through the embedder's crop), pooled over the test images, intervals over images.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import numpy as np
import psycopg
from PIL import Image

from featuregen_assets.core.training.dense_probe import (
    Box,
    PatchInputs,
    ProbeConfig,
    crop_mask,
    detection_counts,
    patch_fractions,
    pixel_patches,
    precision_recall,
    segment,
    train_probe,
)
from featuregen_assets.core.training.splits import Split
from featuregen_assets.core.vision.preprocess import CropResize
from featuregen_assets.research.measurements import Measurement, rows
from featuregen_assets.research.stats import Estimate, bootstrap

QUESTION = "decoding"
QUERY_SET = "segmentation_test_images"
CONTROL_NOISE = 0.25  # sd of the noise on the control's class shares (shares lie in 0..1)
MLP_HIDDEN = 64
TOKENS, PIXELS = "patch tokens", "raw pixel patches"
CONTROL = "positive control: true class shares + noise"
CEILING = "ceiling: linear probe on the true class shares"
LINEAR, MLP = "linear probe", f"mlp {MLP_HIDDEN} probe"
# The first by id (ids are content hashes). At 256 + 128 the probes took 244 CPU s (the demo's
# scale, 1 thread): mostly the MLP on the tokens and the linear head on 588-d pixel patches.
MAX_TRAIN_IMAGES, MAX_TEST_IMAGES = 128, 64
BOX_IOU = 0.5
MIN_BOX_AREA = 16  # px: `regions` drops smaller predicted specks, so truth this small goes too


@dataclass(frozen=True)
class ProbeData:
    """What the probe reads: the embedder's crop and patch tokens, a folder of label masks
    named by the images' URL file stems (`<stem>.png`: class ids, 0 background) and, for the
    box rows, one of scene records (`<stem>.json`: `width`, `height` of the upright image and
    `objects` with `box` [x0, y0, x1, y1) and `class_id`). The demo's scenes come with both."""

    inputs: PatchInputs
    masks_dir: Path
    records_dir: Path | None = None


def probe_method(head: str, features: str) -> str:
    """A probe's method name in the report's rows."""
    return f"{head}: {features}"


def iou_counts(predicted: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    """(images, classes, 2): per image and class, intersection and union pixel counts."""
    out = np.zeros((len(truth), classes, 2), dtype=np.int64)
    for c in range(classes):
        p, t = predicted == c, truth == c
        out[:, c, 0] = (p & t).sum(axis=(1, 2))
        out[:, c, 1] = (p | t).sum(axis=(1, 2))
    return out


def _pooled_miou(counts: np.ndarray) -> float:
    """Mean over the classes present of intersection / union summed over the images."""
    inter, union = counts.sum(axis=0).T
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def iou_estimates(
    predicted: np.ndarray, truth: np.ndarray, classes: int, seed: int = 0
) -> dict[str, Estimate]:
    """Foreground IoU and mIoU, pooled over images, with intervals over images."""
    per_class = iou_counts(predicted, truth, classes)
    foreground = iou_counts(predicted > 0, truth > 0, 2)[:, 1:]
    images = np.arange(len(truth))  # resampled as float by `bootstrap`

    def over(counts: np.ndarray) -> Estimate:
        return bootstrap(images, lambda i: _pooled_miou(counts[i.astype(np.int64)]), seed=seed)

    return {"foreground_iou": over(foreground), "miou": over(per_class)}


def box_estimates(
    predicted: np.ndarray, boxes: Sequence[list[tuple[int, Box]]], seed: int = 0
) -> dict[str, Estimate]:
    """Box precision and recall at IoU 0.5 of the predicted labels' regions, pooled over
    images, with intervals over images (no precision when nothing is predicted anywhere)."""
    counts = detection_counts(predicted, boxes, BOX_IOU)
    images = np.arange(len(counts))

    def over(which: int) -> Estimate:
        return bootstrap(
            images, lambda i: precision_recall(counts[i.astype(np.int64)])[which], seed=seed
        )

    out = {f"box_recall@{BOX_IOU}": over(1)}
    if counts[:, 1].any():
        out[f"box_precision@{BOX_IOU}"] = over(0)
    return out


def record_boxes(record: dict, transform: CropResize) -> list[tuple[int, Box]]:
    """A scene record's (class, box) list under the embedder's crop: scaled, clipped to the
    crop, and left out where under `MIN_BOX_AREA` pixels stay inside (nothing to detect)."""
    (left, top, right, bottom), (width, height) = transform.window(
        record["width"], record["height"]
    )
    sx, sy = width / (right - left), height / (bottom - top)
    out = []
    for obj in record["objects"]:
        x0, y0, x1, y1 = obj["box"]
        box = (
            max(0, round((x0 - left) * sx)),
            max(0, round((y0 - top) * sy)),
            min(width, round((x1 - left) * sx)),
            min(height, round((y1 - top) * sy)),
        )
        if max(box[2] - box[0], 0) * max(box[3] - box[1], 0) >= MIN_BOX_AREA:
            out.append((int(obj["class_id"]), box))
    return out


def compare_dense_probes(
    pixels: np.ndarray,
    masks: np.ndarray,
    tokens: np.ndarray,
    patch: int,
    train: np.ndarray,
    test: np.ndarray,
    config: ProbeConfig | None = None,
    seed: int = 0,
    boxes: Sequence[list[tuple[int, Box]]] | None = None,
) -> list[Measurement]:
    """Rows for each probe on `test` images, trained on `train` (indices into the arrays).
    pixels: (N, H, W, 3) uint8 crops; masks: (N, H, W) class ids (0 background) in the same
    geometry; tokens: (N, H / patch, W / patch, D); `boxes`: the `test` images' true (class,
    box) lists in that geometry, for the box rows."""
    config = config or ProbeConfig()
    classes = int(masks.max()) + 1
    shares = np.stack([patch_fractions(m, patch, classes) for m in masks])
    noise = np.random.default_rng(seed).normal(0, CONTROL_NOISE, shares.shape)
    features = {
        TOKENS: tokens,
        PIXELS: pixel_patches(pixels, patch),
        CONTROL: (shares + noise).astype(np.float32),
    }
    mlp = replace(config, hidden=MLP_HIDDEN)
    probes = [(probe_method(LINEAR, name), name, config) for name in features] + [
        (probe_method(MLP, name), name, mlp) for name in (TOKENS, CONTROL)
    ]
    size = masks.shape[1:]

    def scored(method: str, predicted: np.ndarray) -> list[Measurement]:
        estimates = iou_estimates(predicted, masks[test], classes, seed)
        if boxes is not None:
            estimates |= box_estimates(predicted, boxes, seed)
        return rows(QUESTION, "segmentation", QUERY_SET, method, estimates)

    out: list[Measurement] = []
    for method, name, head in probes:
        probe = train_probe(features[name][train], shares[train], head)
        out += scored(method, segment(probe, features[name][test], size))
    ceiling = train_probe(shares[train], shares[train], config)
    out += scored(CEILING, segment(ceiling, shares[test], size))
    return out + scored("background everywhere", np.zeros_like(masks[test]))


def probe_inputs(
    inputs: PatchInputs,
    image_paths: Sequence[str],
    mask_paths: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels, masks, tokens) of the images under the embedder's own crop."""
    pixels = np.stack([inputs.transform.decode(p) for p in image_paths])
    masks = np.stack([crop_mask(Image.open(p), inputs.transform) for p in mask_paths])
    return pixels, masks, inputs.tokens(pixels)


def mask_files(conn: psycopg.Connection, masks_dir: Path, suffix: str = ".png") -> dict[str, Path]:
    """image id -> its file `<URL file stem><suffix>` in `masks_dir` (a label mask, or a
    scene record with ".json"), for the stored images that have one."""
    found = {}
    for image_id, url in conn.execute(
        "SELECT image_id, url FROM raw_images WHERE status = 'ok' ORDER BY image_id, url"
    ):
        path = masks_dir / f"{PurePosixPath(urlparse(url).path).stem}{suffix}"
        if image_id not in found and path.is_file():
            found[image_id] = path
    return found


def probe_rows(
    conn: psycopg.Connection,
    data: ProbeData,
    split: Split,
    paths: Mapping[str, str],
    log: Callable[[str], None] = print,
) -> list[Measurement]:
    """`compare_dense_probes` on the split's training and test images that have a mask."""
    masks = mask_files(conn, data.masks_dir)
    train = [i for i in split.train if i in masks and i in paths][:MAX_TRAIN_IMAGES]
    test = [i for i in split.test if i in masks and i in paths][:MAX_TEST_IMAGES]
    if not (train and test):
        log(f"research: no label masks in {data.masks_dir} for the split's images: no probe")
        return []
    log(f"research: dense probes on {len(train)} training and {len(test)} test images")
    ids = train + test
    pixels, labels, tokens = probe_inputs(
        data.inputs, [paths[i] for i in ids], [str(masks[i]) for i in ids]
    )
    records = mask_files(conn, data.records_dir, ".json") if data.records_dir else {}
    boxes = None
    if all(i in records for i in test):
        boxes = [
            record_boxes(json.loads(records[i].read_text()), data.inputs.transform) for i in test
        ]
    else:
        log(f"research: no scene record in {data.records_dir} for every test image: no box rows")
    return compare_dense_probes(
        pixels,
        labels,
        tokens,
        data.inputs.patch,
        np.arange(len(train)),
        np.arange(len(train), len(ids)),
        boxes=boxes,
    )
