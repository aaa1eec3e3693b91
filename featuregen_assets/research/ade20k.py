"""ADE20K (SceneParsing, ADEChallengeData2016) and the linear probe's protocol for real weights.

The layout as published: `images/{training,validation}/<name>.jpg` beside
`annotations/{training,validation}/<name>.png`, labels 1-150 (0: "other", ignored). As the
DINOv2 paper's linear protocol: a linear layer on the frozen patch tokens predicts class logits,
upsampled bilinearly to the pixels; trained on every training image (no cap), scored on every
validation image by mIoU over the 150 classes, intersections and unions summed over the whole
validation set (a class in neither truth nor prediction is left out). One difference: the
images are seen through the embedder's own crop (its resize and centre crop), not the full
image at 512 px with a sliding window, so figures sit beside the published ones as an
indication (DINOv2 ViT-S/14 linear: 47.2 mIoU), not a match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from featuregen_assets.core.training.dense_probe import PatchInputs, crop_mask, patch_fractions
from featuregen_assets.research.measurements import Measurement, rows
from featuregen_assets.research.stats import bootstrap

CLASSES = 150
SPLITS = {"train": "training", "test": "validation"}
ANCHOR = "DINOv2 ViT-S/14, linear probe on ADE20K: 47.2 mIoU (ViT-B/14: 47.3, ViT-L/14: 47.7)"


@dataclass(frozen=True)
class Ade20kConfig:
    """The linear head's training: AdamW over mini-batches of images' patches."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_images: int = 64
    seed: int = 0


def ade20k_pairs(root: Path, side: str) -> list[tuple[Path, Path]]:
    """(image, annotation) of every image of `side` ("train" or "test"), by name; a missing
    folder or an image without its annotation is an error."""
    folder = SPLITS[side]
    images, annotations = root / "images" / folder, root / "annotations" / folder
    if not images.is_dir() or not annotations.is_dir():
        raise FileNotFoundError(f"{root}: expected images/{folder} and annotations/{folder}")
    pairs = []
    for image in sorted(images.glob("*.jpg")):
        label = annotations / f"{image.stem}.png"
        if not label.is_file():
            raise FileNotFoundError(f"{image}: no annotation {label}")
        pairs.append((image, label))
    if not pairs:
        raise FileNotFoundError(f"{images}: no .jpg images")
    return pairs


def _inputs(
    inputs: PatchInputs, pairs: Sequence[tuple[Path, Path]]
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, labels) of a batch under the embedder's crop."""
    pixels = np.stack([inputs.transform.decode(str(i)) for i, _ in pairs])
    labels = np.stack([crop_mask(Image.open(a), inputs.transform) for _, a in pairs])
    return inputs.tokens(pixels), labels


def train_linear(
    inputs: PatchInputs, pairs: Sequence[tuple[Path, Path]], config: Ade20kConfig
) -> torch.nn.Linear:
    """A linear head from patch tokens to the 150 classes' logits, trained on the patches'
    class shares ("other" left out; a patch of nothing else does not count)."""
    torch.manual_seed(config.seed)
    head: torch.nn.Linear | None = None
    optimiser = None
    order = np.random.default_rng(config.seed)
    for _ in range(config.epochs):
        shuffled = order.permutation(len(pairs))
        for start in range(0, len(pairs), config.batch_images):
            tokens, labels = _inputs(
                inputs, [pairs[k] for k in shuffled[start : start + config.batch_images]]
            )
            shares = np.stack([patch_fractions(m, inputs.patch, CLASSES + 1) for m in labels])[
                ..., 1:
            ]
            x = torch.from_numpy(tokens).float().reshape(-1, tokens.shape[-1])
            y = torch.from_numpy(shares).reshape(-1, CLASSES)
            known = y.sum(1) > 0
            if head is None:
                head = torch.nn.Linear(x.shape[1], CLASSES)
                optimiser = torch.optim.AdamW(
                    head.parameters(), lr=config.lr, weight_decay=config.weight_decay
                )
            if known.any():
                loss = F.cross_entropy(head(x[known]), y[known] / y[known].sum(1, keepdim=True))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    assert head is not None
    return head.eval()


def image_counts(
    inputs: PatchInputs, head: torch.nn.Linear, pairs: Sequence[tuple[Path, Path]], batch: int = 64
) -> np.ndarray:
    """(images, 150, 2): each image's intersection and union pixel counts per class ("other"
    pixels left out)."""
    out = []
    for start in range(0, len(pairs), batch):
        tokens, labels = _inputs(inputs, pairs[start : start + batch])
        with torch.no_grad():
            logits = head(torch.from_numpy(tokens).float()).permute(0, 3, 1, 2)
            up = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
        for predicted, label in zip(up.argmax(1).numpy(), labels.astype(np.int64) - 1, strict=True):
            keep = label >= 0
            truth, guess = label[keep], predicted[keep]
            inter = np.bincount(truth[truth == guess], minlength=CLASSES)
            union = np.bincount(truth, minlength=CLASSES) + np.bincount(guess, minlength=CLASSES)
            out.append(np.stack([inter, union - inter], axis=1))
    return np.stack(out)


def dataset_miou(counts: np.ndarray) -> float:
    """mIoU over the classes in truth or prediction, intersections and unions summed over the
    images of `counts` (`image_counts`)."""
    inter, union = counts.sum(axis=0).T.astype(np.float64)
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def run_ade20k_linear(
    root: Path,
    inputs: PatchInputs,
    config: Ade20kConfig = Ade20kConfig(),
    log: Callable[[str], None] = print,
) -> tuple[list[Measurement], dict]:
    """The protocol on `root` (ADEChallengeData2016): rows and context."""
    train, test = ade20k_pairs(root, "train"), ade20k_pairs(root, "test")
    log(f"ade20k: linear head on {len(train)} training images, scored on {len(test)}")
    head = train_linear(inputs, train, config)
    counts = image_counts(inputs, head, test)
    estimate = bootstrap(
        np.arange(len(test)), lambda i: dataset_miou(counts[i.astype(np.int64)]), seed=config.seed
    )
    rows_ = rows(
        "ade20k-linear",
        "segmentation",
        "validation",
        "linear probe: patch tokens",
        {"miou": estimate},
    )
    context = {
        "protocol": "ade20k-linear",
        "anchors": ANCHOR,
        "split_sizes": {"train": len(train), "test": len(test)},
        "classes_scored": int((counts.sum(axis=(0, 2)) > 0).sum()),
        "probe": {"epochs": config.epochs, "lr": config.lr, "batch_images": config.batch_images},
    }
    return rows_, context
