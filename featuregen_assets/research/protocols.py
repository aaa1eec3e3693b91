"""Standard caption-retrieval protocols for real weights: Karpathy's COCO and Flickr30k splits.

As the published figures are measured: images split by the annotation file's own `split`
(train + restval to train, val to choose the kept epoch, test to score: 5,000 COCO images, or
five folds of 1,000 averaged, and Flickr30k's 1,000); all five captions of each image are
training texts and, for test images, queries; recall@1/5/10 text -> image (each caption: is its
image in the top k of the test images?) and image -> text (each image: is one of its captions
in the top k of all test captions?). No category rows: the datasets have one category.
Published anchor: CLIP ViT-B/32 reaches COCO 5k text -> image R@1 30.4 (zero-shot).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featuregen_assets.core.ingest.caption_datasets import CaptionedImage, read_dataset
from featuregen_assets.core.training.alignment import AlignmentConfig
from featuregen_assets.core.training.alignment_training import train_alignment
from featuregen_assets.core.training.metrics import ranks_of_positives
from featuregen_assets.core.training.splits import Split
from featuregen_assets.research.answer_text import say
from featuregen_assets.research.measurements import Measurement, rows
from featuregen_assets.research.stats import RECALL_KS, Estimate, bootstrap
from featuregen_assets.research.text_baselines import unit


@dataclass(frozen=True)
class CaptionProtocol:
    """One protocol: its dataset's test size and the published figures to set beside ours."""

    name: str
    test_images: int
    anchors: str


PROTOCOLS = {
    "coco-karpathy": CaptionProtocol(
        "coco-karpathy",
        5000,
        "CLIP ViT-B/32 (zero-shot), COCO 5k: text -> image R@1 30.4; LiT trained on COCO"
        " captions only: text -> image R@1 32.1",
    ),
    "flickr30k-karpathy": CaptionProtocol(
        "flickr30k-karpathy",
        1000,
        "none recorded here: set the figures beside the paper you compare with",
    ),
}
SIDES = {"train": "train", "restval": "train", "val": "validation", "test": "test"}
FOLD = 1000


def karpathy_sides(images: Sequence[CaptionedImage]) -> dict[str, list[CaptionedImage]]:
    """train (train + restval), validation (val) and test, in file order; an image of another
    split, or without captions, is an error (the protocol reads every one)."""
    sides: dict[str, list[CaptionedImage]] = {"train": [], "validation": [], "test": []}
    for image in images:
        if image.split not in SIDES:
            raise ValueError(
                f"{image.path}: split {image.split!r} is not one of {sorted(SIDES)}"
                " (a Karpathy split file names one for every image)"
            )
        if not image.captions:
            raise ValueError(f"{image.path}: no captions")
        sides[SIDES[image.split]].append(image)
    return sides


def both_directions(
    queries: np.ndarray, owners: np.ndarray, images: np.ndarray, seed: int = 0
) -> dict[str, dict[str, Estimate]]:
    """recall@1/5/10 text -> image (over captions) and image -> text (over images), with 95 %
    intervals. `queries`: caption vectors; `owners[c]`: the image row of caption c."""
    scores = unit(queries) @ unit(images).T
    positives = owners[:, None] == np.arange(len(images))[None, :]
    t2i = ranks_of_positives(scores, positives)
    i2t = ranks_of_positives(scores.T, positives.T)
    return {
        "text_to_image": {f"recall@{k}": bootstrap(t2i <= k, seed=seed) for k in RECALL_KS},
        "image_to_text": {f"recall@{k}": bootstrap(i2t <= k, seed=seed) for k in RECALL_KS},
    }


def folds_mean(
    queries: np.ndarray, owners: np.ndarray, images: np.ndarray, size: int
) -> dict[str, dict[str, Estimate]]:
    """The 1k protocol: `both_directions` on consecutive folds of `size` test images, the
    figures averaged over folds (an interval per fold is not pooled: min and max of theirs)."""
    folds = []
    for start in range(0, len(images) - size + 1, size):
        keep = (owners >= start) & (owners < start + size)
        folds.append(
            both_directions(queries[keep], owners[keep] - start, images[start : start + size])
        )
    out: dict[str, dict[str, Estimate]] = {}
    for direction in folds[0]:
        out[direction] = {
            metric: Estimate(
                float(np.mean([f[direction][metric].value for f in folds])),
                min(f[direction][metric].ci_low for f in folds),
                max(f[direction][metric].ci_high for f in folds),
                sum(f[direction][metric].n for f in folds),
            )
            for metric in folds[0][direction]
        }
    return out


@dataclass
class ProtocolRun:
    """What a protocol run measured, and on what."""

    measurements: list[Measurement]
    context: dict


def run_caption_protocol(
    protocol: str,
    annotations: Path,
    image_dir: Path,
    embed: Callable[[Sequence[Path]], np.ndarray],
    text_tower: str,
    config: AlignmentConfig,
    test_size: int | None = None,
    log: Callable[[str], None] = print,
) -> ProtocolRun:
    """Embed every image of the split file, train the text encoder on train + restval with
    all their captions (val keeps the best epoch), and score the test images both ways.
    `test_size`: 1000 on COCO scores five folds of 1,000 and averages them."""
    spec = PROTOCOLS[protocol]
    sides = karpathy_sides(read_dataset(annotations, "karpathy"))
    missing = [
        i.path for side in sides.values() for i in side if not (image_dir / i.path).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image files missing under {image_dir}, e.g. {missing[0]}"
        )
    ordered = [i for name in ("train", "validation", "test") for i in sides[name]]
    log(
        f"{protocol}: {', '.join(f'{len(v)} {k}' for k, v in sides.items())} images"
        f" (the published test has {spec.test_images}); embedding"
    )
    vectors = embed([image_dir / i.path for i in ordered])
    row = {i.path: r for r, i in enumerate(ordered)}
    texts = [c for i in ordered for c in i.captions]
    ids = [i.path for i in ordered for _ in i.captions]
    split = Split(
        *(tuple(sorted(i.path for i in sides[n])) for n in ("train", "validation", "test"))
    )
    trained = train_alignment(
        texts, ids, vectors[[row[i] for i in ids]], text_tower, config, log=log, split=split
    )
    test = sides["test"]
    queries = [c for i in test for c in i.captions]
    owners = np.array([k for k, i in enumerate(test) for _ in i.captions])
    test_vectors = vectors[[row[i.path] for i in test]]
    encoded = trained.encoder.encode(queries)
    if test_size and test_size < len(test):
        figures = folds_mean(encoded, owners, test_vectors, test_size)
        gallery = f"{len(test) // test_size} folds of {test_size}"
    else:
        figures = both_directions(encoded, owners, test_vectors)
        gallery = f"{len(test)} images"
    measurements = []
    for direction, estimates in figures.items():
        measurements += rows(protocol, "retrieval", direction, "trained_encoder", estimates)
    context = {
        "protocol": protocol,
        "anchors": spec.anchors,
        "split_sizes": {k: len(v) for k, v in sides.items()},
        "split_hashes": split.hashes(),
        "test_gallery": gallery,
        "queries": len(queries),
        "training_texts": sum(len(i.captions) for i in sides["train"]),
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "kept_epoch": trained.metrics.get("kept_epoch"),
    }
    return ProtocolRun(measurements, context)


def protocol_answers(run: ProtocolRun) -> list[str]:
    """One line per direction: recall@1/5/10 with intervals, and the published anchors."""
    out = []
    for direction in ("text_to_image", "image_to_text"):
        found = [m for m in run.measurements if m.query_set == direction]
        if found:
            figures = ", ".join(
                f"{m.metric} {100 * m.value:.1f} [{100 * m.ci_low:.1f}, {100 * m.ci_high:.1f}]"
                for m in found
            )
            out.append(
                say(
                    "protocol_direction",
                    direction=direction.replace("_", " "),
                    gallery=run.context["test_gallery"],
                    figures=figures,
                )
            )
    out.append(say("protocol_anchors", anchors=run.context["anchors"]))
    return out
