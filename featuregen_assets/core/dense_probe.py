"""Dense probe: can a segmenter be trained on DINOv2 features? (research question 2)

A linear head maps each patch token to class logits; the logits are upsampled bilinearly to
the pixels and scored by mean IoU against the label mask, the linear-probe protocol of the
DINOv2 paper. The same head on raw pixel patches is the baseline a feature must beat.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from featuregen_assets.core.embedding import CropResize


@dataclass(frozen=True)
class ProbeConfig:
    """Full-batch AdamW on per-patch majority labels."""

    epochs: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 0


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


class LinearProbe(torch.nn.Module):
    """Standardised features → class logits per patch."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.head = torch.nn.Linear(len(mean), classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, rows, cols, D) → (N, classes, rows, cols) logits."""
        return self.head((features - self.mean) / self.std).permute(0, 3, 1, 2)


def train_probe(
    features: np.ndarray, targets: np.ndarray, config: ProbeConfig = ProbeConfig()
) -> LinearProbe:
    """Fit a linear probe on (N, rows, cols, D) features and (N, rows, cols, classes) class
    shares (`patch_fractions`). Classes are weighted by the inverse square root of their
    share, so small objects are not lost to the background."""
    torch.manual_seed(config.seed)
    x = torch.from_numpy(features).float().reshape(-1, features.shape[-1])
    y = torch.from_numpy(targets).float().reshape(-1, targets.shape[-1])
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std  # once, not every epoch
    share = y.mean(0).clamp_min(1e-4)
    weight = share.rsqrt() / share.rsqrt().mean()
    probe = LinearProbe(mean, std, y.shape[-1])
    optimiser = torch.optim.AdamW(
        probe.head.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    for _ in range(config.epochs):
        optimiser.zero_grad()
        F.cross_entropy(probe.head(x), y, weight=weight).backward()
        optimiser.step()
    return probe.eval()


@torch.no_grad()
def segment(probe: LinearProbe, features: np.ndarray, size: tuple[int, int]) -> np.ndarray:
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
