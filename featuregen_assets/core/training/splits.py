"""Deterministic train / held-out split keyed by image id.

An image's side of the split depends only on its id and a salt, never on which
other images exist, so adding images never moves an old one across the split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

DEFAULT_SALT = "featuregen-heldout-v1"


def held_out_score(image_id: str, salt: str = DEFAULT_SALT) -> float:
    """A uniform pseudo-random number in [0, 1) from sha256(salt + image_id)."""
    digest = hashlib.sha256(f"{salt}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_held_out(image_id: str, fraction: float, salt: str = DEFAULT_SALT) -> bool:
    """True when the image belongs to the held-out side for this fraction."""
    return held_out_score(image_id, salt) < fraction


def held_out_mask(
    image_ids: Sequence[str], fraction: float, salt: str = DEFAULT_SALT
) -> np.ndarray:
    """Boolean mask over `image_ids`: True = held out, False = train.

    Duplicated ids always land on the same side. When the threshold leaves one side
    empty (tiny data sets), the id with the smallest score is held out and the rest
    trained on, so both sides are non-empty whenever there are two distinct ids.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    scores = np.array([held_out_score(i, salt) for i in image_ids], dtype=np.float64)
    mask = scores < fraction
    if len(set(image_ids)) >= 2 and (mask.all() or not mask.any()):
        mask = scores == scores.min()
    return mask
