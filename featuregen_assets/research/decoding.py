"""Question 2: can DINOv2 features be decoded back into images?

On the decoder's test images, the trained decoder (and any other decoders' outputs given,
e.g. one from all patch tokens) beside what needs no training: the train mean image, the mean
image of the category of the nearest training vector, the nearest training image itself, and
the original at the decoder's resolution (the ceiling). All are
scored at `size` px (at least 64): PSNR/SSIM against the original, and feature consistency -
each output embedded again, its cosine to the source vector (beside the cosine two different
test images of one category reach) and how often it finds its own source first, among all
test vectors and among its category's.

Like for like: `like_for_like_decoders` trains, with one config and budget on the same
training images, a FeatureDecoder on the stored vectors, its positive control (the same
decoder on the 16 px original, 768 numbers that hold the image: it has to come near the 16 px
original itself, its ceiling, or the decoder, not the features, is the limit) and, given
`patch_grids`, a PatchDecoder on each image's patch-token grid; all are then scored here
beside the registered decoder and the lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from featuregen_assets.core.training.decoder import DecoderConfig, square_image, train_decoder
from featuregen_assets.core.training.metrics import psnr, ssim
from featuregen_assets.research.measurements import Measurement, rows
from featuregen_assets.research.patch_grids import PatchGridFiles
from featuregen_assets.research.stats import Estimate, bootstrap
from featuregen_assets.research.text_baselines import unit

QUESTION = "decoding"
DECODER_SET = "test_images"
Encode = Callable[[list[Image.Image]], np.ndarray]
MAX_TOKEN_DECODER_TRAIN_IMAGES = 2048  # the first by row; grids are held in memory to train
FROM_TOKENS, FROM_VECTOR = "decoder_from_patch_tokens", "decoder_from_stored_vector"
CONTROL_SIDE = 16
FROM_PIXELS = f"positive control: decoder from the {CONTROL_SIDE} px original"
CONTROL_CEILING = f"ceiling of the control: the {CONTROL_SIDE} px original"


def like_for_like_decoders(
    vectors: np.ndarray,
    image_ids: Sequence[str],
    paths: Sequence[str],
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    config: DecoderConfig,
    grids: PatchGridFiles | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, np.ndarray]:
    """The `test_rows` images decoded by decoders trained with `config` on the same
    `train_rows` images, from the stored vectors, from the small original (the positive
    control) and, given `grids`, from the patch-token grids; plus the control's ceiling."""
    rows = np.r_[train_rows[:MAX_TOKEN_DECODER_TRAIN_IMAGES], test_rows]
    ids, files = [image_ids[r] for r in rows], [paths[r] for r in rows]
    small = np.stack([square_image(f, CONTROL_SIDE) for f in files])
    inputs = {
        FROM_VECTOR: vectors[rows],
        FROM_PIXELS: small.reshape(len(rows), -1).astype(np.float32) / 255.0,
    }
    if grids is not None:
        log(f"research: patch-token grids of {len(rows)} images ({grids.directory})")
        inputs[FROM_TOKENS] = grids.read(ids, files)
    out = {}
    for method, features in inputs.items():
        result = train_decoder(features, files, ids, config, log=lambda _m: None)
        if result.metrics["held_out_images"] != len(test_rows):
            raise ValueError("a decoder's held-out images differ from the registered decoder's")
        out[f"{method} ({config.epochs} epochs)"] = result.decoder.decode(
            features[-len(test_rows) :]
        )
        log(f"research: {method}, {config.epochs} epochs, {result.metrics['train_seconds']:.0f}s")
    return {**out, CONTROL_CEILING: small[-len(test_rows) :]}


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, s, s, 3) -> (N, size, size, 3), bicubic."""
    return np.stack(
        [np.asarray(Image.fromarray(i).resize((size, size), Image.BICUBIC)) for i in images]
    )


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def compare_decoding(
    vectors: np.ndarray,
    paths: Sequence[str],
    categories: Sequence[str],
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    decode: Callable[[np.ndarray], np.ndarray],
    decoder_size: int,
    encode: Encode | None,
    size: int = 64,
    seed: int = 0,
    other_decoders: dict[str, np.ndarray] | None = None,
) -> tuple[list[Measurement], dict[str, np.ndarray]]:
    """Measurements per method, and each method's test images (for grids). `other_decoders`:
    method -> its uint8 (N, s, s, 3) outputs for `test_rows`, scored beside the decoder."""
    size = max(size, 64)
    categories = np.asarray(categories, dtype=object)
    originals = np.stack([square_image(paths[r], size) for r in test_rows])
    train_images = np.stack([square_image(paths[r], size) for r in train_rows])
    similarity = unit(vectors[test_rows]) @ unit(vectors[train_rows]).T
    nearest = similarity.argmax(axis=1)
    nearest_category = categories[train_rows][nearest]
    category_means = {
        c: train_images[categories[train_rows] == c].mean(0) for c in set(categories[train_rows])
    }
    small = np.stack([square_image(paths[r], decoder_size) for r in test_rows])
    outputs = {
        "decoder": _resized(decode(vectors[test_rows]), size),
        **{name: _resized(images, size) for name, images in (other_decoders or {}).items()},
        "global_mean_image": np.repeat(
            train_images.mean(0, keepdims=True).round().astype(np.uint8), len(test_rows), 0
        ),
        "category_mean_image (nearest training vector's category)": np.stack(
            [category_means[c].round().astype(np.uint8) for c in nearest_category]
        ),
        "nearest_training_image": train_images[nearest],
        f"downsized_original ({decoder_size} px, ceiling)": _resized(small, size),
    }
    target = _tensor(originals)
    measurements: list[Measurement] = []
    test_categories = categories[test_rows]
    source = unit(vectors[test_rows])
    for method, images in outputs.items():
        got = _tensor(images)
        estimates: dict[str, Estimate] = {
            "psnr_db": bootstrap(psnr(got, target).numpy(), seed=seed),
            "ssim": bootstrap(ssim(got, target).numpy(), seed=seed),
        }
        if encode is not None:
            again = unit(encode([Image.fromarray(i) for i in images]))
            cos = again @ source.T
            estimates["reencoded_cosine"] = bootstrap(np.diag(cos), seed=seed)
            own = cos.argmax(axis=1) == np.arange(len(cos))
            estimates["self_retrieval_top1"] = bootstrap(own, seed=seed)
            masked = np.where(test_categories[None, :] == test_categories[:, None], cos, -np.inf)
            estimates["self_retrieval_top1_within_category"] = bootstrap(
                masked.argmax(axis=1) == np.arange(len(cos)), seed=seed
            )
        measurements += rows(QUESTION, "decoding", DECODER_SET, method, estimates)
    if encode is not None:
        measurements += _reference_cosines(source, test_categories, len(test_rows), seed)
    return measurements, {"original": originals, **outputs}


def _reference_cosines(
    source: np.ndarray, categories: np.ndarray, n: int, seed: int
) -> list[Measurement]:
    """Cosine between two different test images of one category, and of two categories:
    what a re-encoded cosine has to beat to say more than "same category"."""
    cos = source @ source.T
    same = categories[:, None] == categories[None, :]
    off = ~np.eye(n, dtype=bool)
    per_image_same = np.array(
        [cos[i, same[i] & off[i]].mean() if (same[i] & off[i]).any() else np.nan for i in range(n)]
    )
    per_image_other = np.array(
        [cos[i, ~same[i]].mean() if (~same[i]).any() else np.nan for i in range(n)]
    )
    return [
        *rows(
            QUESTION,
            "decoding",
            DECODER_SET,
            "reference: two test images of one category",
            {"reencoded_cosine": bootstrap(per_image_same[~np.isnan(per_image_same)], seed=seed)},
        ),
        *rows(
            QUESTION,
            "decoding",
            DECODER_SET,
            "reference: two test images of different categories",
            {"reencoded_cosine": bootstrap(per_image_other[~np.isnan(per_image_other)], seed=seed)},
        ),
    ]
