"""Dense probe: can a segmenter or detector be trained on DINOv2 features? (research question 2)

A linear head maps each patch token to class logits; the logits are upsampled bilinearly to
the pixels and scored by mean IoU against the label mask, the linear-probe protocol of the
DINOv2 paper. As a detector, each connected region of one class in the predicted labels is a
box, scored by class-aware precision and recall at IoU ≥ 0.5 against the true objects' boxes.
The same head on raw pixel patches is the baseline a feature must beat; a non-linear head
(`ProbeConfig.hidden`) tells "the features lack it" from "a linear head is too weak".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from featuregen_assets.core.vision.preprocess import CropResize


@dataclass(frozen=True)
class ProbeConfig:
    """Full-batch AdamW on per-patch class shares. `hidden`: 0 for a linear head, else the
    width of a Linear-GELU-Linear head."""

    epochs: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 0
    hidden: int = 0


@dataclass(frozen=True)
class PatchInputs:
    """How an embedder sees images for a dense probe: its crop and its patch tokens."""

    transform: CropResize
    patch: int
    tokens: Callable[[np.ndarray], np.ndarray]  # uint8 NHWC crops -> (N, rows, cols, D)


def patch_inputs(embedder, batch: int = 64) -> PatchInputs:
    """The `PatchInputs` of an `embedding.ImageEmbedder`."""

    def tokens(pixels: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                embedder.patch_tokens(
                    embedder.pixels_to_input(torch.from_numpy(pixels[s : s + batch]))
                )
                .cpu()
                .numpy()
                for s in range(0, len(pixels), batch)
            ]
        )

    return PatchInputs(embedder.transform, embedder.model.config.patch_size, tokens)


def crop_mask(mask: Image.Image, transform: CropResize) -> np.ndarray:
    """A label mask under an image's preprocessing geometry (nearest neighbour: no blends)."""
    nearest = replace(transform, resample=int(Image.Resampling.NEAREST))
    return nearest(mask.convert("L"))


def patch_fractions(mask: np.ndarray, patch: int, classes: int) -> np.ndarray:
    """(rows, cols, classes): the share of each class in each ``patch`` × ``patch`` block.

    Soft targets keep the objects that cover less than half a patch, which a majority label
    would turn into background.
    """
    rows, cols = mask.shape[0] // patch, mask.shape[1] // patch
    blocks = mask[: rows * patch, : cols * patch].reshape(rows, patch, cols, patch)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(rows, cols, patch * patch)
    onehot = np.eye(classes, dtype=np.float32)[blocks.astype(np.int64)]
    return onehot.mean(axis=2)


def pixel_patches(pixels: np.ndarray, patch: int) -> np.ndarray:
    """(N, rows, cols, patch² · 3) raw pixel patches of uint8 NHWC images, scaled to 0–1."""
    n, h, w, c = pixels.shape
    rows, cols = h // patch, w // patch
    x = pixels[:, : rows * patch, : cols * patch].reshape(n, rows, patch, cols, patch, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, rows, cols, -1).astype(np.float32) / 255


class PatchProbe(torch.nn.Module):
    """Standardised features → class logits per patch (a linear head, or an MLP with
    `hidden` units)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, classes: int, hidden: int = 0):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.head = (
            torch.nn.Sequential(
                torch.nn.Linear(len(mean), hidden),
                torch.nn.GELU(),
                torch.nn.Linear(hidden, classes),
            )
            if hidden
            else torch.nn.Linear(len(mean), classes)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, rows, cols, D) → (N, classes, rows, cols) logits."""
        return self.head((features - self.mean) / self.std).permute(0, 3, 1, 2)


def train_probe(
    features: np.ndarray, targets: np.ndarray, config: ProbeConfig = ProbeConfig()
) -> PatchProbe:
    """Fit a probe on (N, rows, cols, D) features and (N, rows, cols, classes) class
    shares (`patch_fractions`). Classes are weighted by the inverse square root of their
    share, so small objects are not lost to the background."""
    torch.manual_seed(config.seed)
    x = torch.from_numpy(features).float().reshape(-1, features.shape[-1])
    y = torch.from_numpy(targets).float().reshape(-1, targets.shape[-1])
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std  # once, not every epoch
    share = y.mean(0).clamp_min(1e-4)
    weight = share.rsqrt() / share.rsqrt().mean()
    probe = PatchProbe(mean, std, y.shape[-1], config.hidden)
    optimiser = torch.optim.AdamW(
        probe.head.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    for _ in range(config.epochs):
        optimiser.zero_grad()
        F.cross_entropy(probe.head(x), y, weight=weight).backward()
        optimiser.step()
    return probe.eval()


@torch.no_grad()
def segment(probe: PatchProbe, features: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, height, width) predicted labels: logits upsampled bilinearly to ``size``."""
    logits = probe(torch.from_numpy(features).float())
    up = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return up.argmax(dim=1).numpy()


def mean_iou(predicted: np.ndarray, truth: np.ndarray, classes: int) -> tuple[float, list[float]]:
    """Mean IoU over the classes present in ``truth`` or ``predicted``, and each class's IoU
    (NaN where a class is in neither)."""
    ious = []
    for c in range(classes):
        p, t = predicted == c, truth == c
        union = np.logical_or(p, t).sum()
        ious.append(float(np.logical_and(p, t).sum() / union) if union else float("nan"))
    return float(np.nanmean(ious)), ious


Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), pixels


def _runs(row: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end exclusive, class) of each run of one non-background class in a row."""
    edges = np.flatnonzero(np.diff(row)) + 1
    starts, ends = np.r_[0, edges], np.r_[edges, len(row)]
    return [(int(a), int(b), int(row[a])) for a, b in zip(starts, ends, strict=True) if row[a] > 0]


def regions(labels: np.ndarray, min_area: int = 16) -> list[tuple[int, Box]]:
    """(class, box) of each 4-connected region of one non-background class in a label map,
    ignoring regions smaller than ``min_area`` pixels (specks of a noisy prediction).

    Run-length labelling: each row's runs of one class, joined (union-find) to the runs of
    the same class they touch in the row above; a map holds a few runs a row, so this is
    milliseconds where a per-pixel pass is a second.
    """
    parent: list[int] = []
    spans: list[tuple[int, int, int, int, int, int]] = []  # class, x0, y0, x1, y1, area

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    above: list[tuple[int, int, int, int]] = []  # start, end, class, run number
    for y, row in enumerate(labels):
        current = []
        for start, end, label in _runs(row):
            k = len(parent)
            parent.append(k)
            spans.append((label, start, y, end, y + 1, end - start))
            for a_start, a_end, a_label, a in above:
                if a_label == label and a_start < end and start < a_end:
                    parent[root(a)] = root(k)
            current.append((start, end, label, k))
        above = current
    merged: dict[int, list[int]] = {}
    for k, (label, x0, y0, x1, y1, area) in enumerate(spans):
        box = merged.setdefault(root(k), [label, x0, y0, x1, y1, 0])
        box[1:5] = [min(box[1], x0), min(box[2], y0), max(box[3], x1), max(box[4], y1)]
        box[5] += area
    return [
        (label, (x0, y0, x1, y1))
        for label, x0, y0, x1, y1, area in sorted(merged.values(), key=lambda b: (b[2], b[1]))
        if area >= min_area
    ]


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0) * max(height, 0)
    union = _area(a) + _area(b) - inter
    return inter / union if union else 0.0


def matched_detections(
    predicted: list[tuple[int, Box]], truth: list[tuple[int, Box]], iou: float = 0.5
) -> int:
    """How many predicted boxes find an unmatched true box of their class at ``iou`` or more
    (largest predictions first, each to its best remaining match)."""
    unmatched = list(truth)
    hits = 0
    for label, box in sorted(predicted, key=lambda item: _area(item[1]), reverse=True):
        candidates = [(box_iou(box, t), k) for k, (c, t) in enumerate(unmatched) if c == label]
        best = max(candidates, default=(0.0, -1))
        if best[0] >= iou:
            unmatched.pop(best[1])
            hits += 1
    return hits


def detection_counts(
    predicted: np.ndarray, truth: Sequence[list[tuple[int, Box]]], iou: float = 0.5
) -> np.ndarray:
    """(N, 3): per predicted label map (N, H, W), its `regions` that match a true (class, box)
    of its image at ``iou`` or more, its regions, and its true boxes."""
    out = np.zeros((len(predicted), 3), dtype=np.int64)
    for row, (labels, objects) in enumerate(zip(predicted, truth, strict=True)):
        boxes = regions(labels)
        out[row] = matched_detections(boxes, objects, iou), len(boxes), len(objects)
    return out


def precision_recall(counts: np.ndarray) -> tuple[float, float]:
    """Pooled precision and recall of `detection_counts` rows; precision is NaN without
    predictions."""
    hits, found, expected = counts.sum(axis=0)
    return (hits / found if found else float("nan")), (hits / expected if expected else 0.0)


def detection_precision_recall(
    predicted: np.ndarray, truth: Sequence[list[tuple[int, Box]]], iou: float = 0.5
) -> tuple[float, float]:
    """Precision and recall at ``iou`` of the `regions` of predicted label maps (N, H, W)
    against each image's true (class, box) list; precision is NaN without predictions."""
    return precision_recall(detection_counts(predicted, truth, iou))
