"""Learned variants of the text encoder, trained on the registered encoder's recorded split.

The registered encoder is LiT (the text tower trained), InfoNCE, on the stored vectors (CLS
pooling by default). Each variant changes one thing and trains on the same training images
with the same texts, is scored on the same test gallery and queries, and is averaged over
the same seeds: `talk2dino` freezes the text tower and trains Talk2DINO's Linear-tanh-Linear
head (at the frozen-tower learning rate), `siglip` swaps the loss for SigLIP's pairwise
sigmoid, `cls_mean` trains and scores in the space of CLS ⊕ mean-patch vectors (the images
embedded again with that pooling).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from featuregen_assets.core.research.text_baselines import unit
from featuregen_assets.core.research.variant_names import VARIANTS, method_name, parse_variants
from featuregen_assets.core.training.alignment import AlignmentConfig, train_alignment
from featuregen_assets.core.training.splits import SPLITS, Split
from featuregen_assets.core.training.training_data import PairSet

Encode = Callable[[Sequence[str]], np.ndarray]
EncodeImages = Callable[[list[Image.Image]], np.ndarray]

FROZEN_TOWER_LR = 1e-3  # AlignmentConfig's advice for the frozen-tower recipes


def variant_config(base: AlignmentConfig, variant: str) -> AlignmentConfig:
    """The registered encoder's config with the variant's one change."""
    if variant == "talk2dino":
        return replace(base, recipe="talk2dino", lr=FROZEN_TOWER_LR, train_last_layers=None)
    if variant == "siglip":
        return replace(base, loss="siglip")
    if variant == "cls_mean":
        return base
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")


def recorded_pairs(pairs: PairSet, split: Split) -> PairSet:
    """The pairs of the split's images only (images stored since the training stay out)."""
    keep = {*split.train, *split.validation, *split.test}
    rows = [r for r, image_id in enumerate(pairs.image_ids) if image_id in keep]
    return PairSet(
        [pairs.texts[r] for r in rows], [pairs.image_ids[r] for r in rows], pairs.vectors[rows]
    )


def train_on_split(
    pairs: PairSet,
    split: Split,
    text_tower: str,
    config: AlignmentConfig,
    seeds: Sequence[int],
) -> list[Encode]:
    """One trained encoder per seed, each checked to have trained on `split`'s training
    images only (its own validation and test images are the recorded ones)."""
    encoders = []
    for seed in seeds:
        result = train_alignment(
            pairs.texts,
            pairs.image_ids,
            pairs.vectors,
            text_tower,
            replace(config, seed=seed),
            log=lambda _m: None,
        )
        if any(not set(result.split.of(s)) <= set(split.of(s)) for s in SPLITS):
            raise ValueError(
                "a retrained encoder split the images otherwise than the recorded split (the"
                " stored texts changed since the encoder was trained): retrain the text encoder"
            )
        encoders.append(result.encoder.encode)
    return encoders


@dataclass
class TrainedVariants:
    """Per method name: one encode function per seed, and the image vectors it scores
    against where they are not the stored ones (rows as the corpus's image ids)."""

    encoders: dict[str, list[Encode]]
    image_vectors: dict[str, np.ndarray]
    seconds: dict[str, float]


def pooled_vectors(encode: EncodeImages, paths: Sequence[str], batch: int = 64) -> np.ndarray:
    """Unit vectors of the image files, embedded `batch` at a time."""
    out = []
    for start in range(0, len(paths), batch):
        out.append(encode([Image.open(p) for p in paths[start : start + batch]]))
    return unit(np.concatenate(out)).astype(np.float32)


def train_variants(
    variants: Sequence[str],
    pairs: PairSet,
    split: Split,
    image_ids: Sequence[str],
    paths: Sequence[str],
    text_tower: str,
    config: AlignmentConfig,
    seeds: int,
    encode_pooled: EncodeImages | None,
    log: Callable[[str], None] = print,
) -> TrainedVariants:
    """Train each variant `seeds` times on the recorded split. `image_ids` and `paths`: the
    corpus's images (for `cls_mean`, embedded again with `encode_pooled`)."""
    pairs = recorded_pairs(pairs, split)
    out = TrainedVariants({}, {}, {})
    for variant in parse_variants(variants):
        started, cpu = time.perf_counter(), time.process_time()
        name = method_name(variant)
        space = pairs
        if variant == "cls_mean":
            if encode_pooled is None:
                log("research: no CLS ⊕ mean-patch embedder for the stored vectors: no cls_mean")
                continue
            pooled = pooled_vectors(encode_pooled, paths)
            row = {image_id: r for r, image_id in enumerate(image_ids)}
            space = replace(pairs, vectors=pooled[[row[i] for i in pairs.image_ids]])
            out.image_vectors[name] = pooled
        out.encoders[name] = train_on_split(
            space, split, text_tower, variant_config(config, variant), range(seeds)
        )
        out.seconds[variant] = time.perf_counter() - started
        log(
            f"research: {variant} variant, {seeds} seed(s), in {out.seconds[variant]:.0f}s"
            f" ({time.process_time() - cpu:.0f} CPU s)"
        )
    return out
