"""Deterministic train / validation / test splits keyed by image id.

An image's side of the split depends only on its id and a salt, never on which
other images exist, so adding images never moves an old one across the split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass

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


SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """Train / validation / test image ids: disjoint, each sorted; recorded with a model.

    An id's side depends only on its score (`held_out_score`): below `test_fraction` it is
    test, below `test_fraction + validation_fraction` validation, else train; ids in
    `forced_test` (e.g. images showing a held-out combination) are test whatever their score.
    The test side is the same images `held_out_mask(ids, test_fraction)` holds out.
    """

    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]

    def of(self, name: str) -> tuple[str, ...]:
        """The ids of split `name` (train, validation or test)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def hashes(self) -> dict[str, str]:
        """sha256 of each split's sorted, newline-joined id list (to record beside figures)."""
        return {
            name: hashlib.sha256("\n".join(self.of(name)).encode()).hexdigest() for name in SPLITS
        }

    def as_dict(self) -> dict[str, list[str]]:
        """The id lists, JSON-ready."""
        return {name: list(self.of(name)) for name in SPLITS}


def three_way_split(
    image_ids: Sequence[str],
    test_fraction: float,
    validation_fraction: float,
    salt: str = DEFAULT_SALT,
    forced_test: Collection[str] = (),
) -> Split:
    """Split distinct `image_ids` into train / validation / test (see `Split`)."""
    if not (test_fraction > 0.0 and validation_fraction >= 0.0) or (
        test_fraction + validation_fraction >= 1.0
    ):
        raise ValueError(
            f"need 0 < test_fraction, 0 <= validation_fraction and a sum below 1, got"
            f" {test_fraction} and {validation_fraction}"
        )
    forced = set(forced_test)
    sides: dict[str, list[str]] = {name: [] for name in SPLITS}
    for image_id in sorted(set(image_ids)):
        score = held_out_score(image_id, salt)
        if image_id in forced or score < test_fraction:
            sides["test"].append(image_id)
        elif score < test_fraction + validation_fraction:
            sides["validation"].append(image_id)
        else:
            sides["train"].append(image_id)
    return Split(*(tuple(sides[name]) for name in SPLITS))


def images_mentioning(
    texts: Sequence[str], image_ids: Sequence[str], phrases: Sequence[str]
) -> set[str]:
    """Ids of the images one of whose texts contains any of `phrases` (case-insensitive)."""
    lowered = [p.lower() for p in phrases if p.strip()]
    return {
        image_id
        for text, image_id in zip(texts, image_ids, strict=True)
        if any(p in text.lower() for p in lowered)
    }
