"""Deterministic train / validation / test splits keyed by image id or by caption group.

Ungrouped, an image's side depends only on its id and a salt, never on which other images
exist, so adding images never moves an old one across the split. Grouped (`caption_groups`),
images whose texts share a bag of words (colour-swap twins: "a red circle and a blue square"
and "a blue circle and a red square") are one group and its side depends on the group's key:
no test image then has a training image with the same words.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_SALT = "featuregen-heldout-v1"
GROUPINGS = {
    "image_id": "each image on its own (by sha256 of the salt and its id)",
    "caption_words": "images sharing a text's bag of lowercase words are one group (colour-swap"
    " twins included), all on one side (by sha256 of the salt and the group's smallest bag); a"
    " bag on more than 1 % of the images (and 5) is a label and links nothing",
}


def word_bag(text: str) -> str:
    """A text's bag of lowercase words, sorted and space-joined (word order and case ignored)."""
    return " ".join(sorted(re.findall(r"\w+", text.lower())))


LABEL_SHARE, LABEL_MIN = 0.01, 5  # a bag on more images than this share and count: a label


def caption_groups(texts: Sequence[str], image_ids: Sequence[str]) -> dict[str, str]:
    """image id -> its group's key: images linked by a shared word bag (over any of their
    texts, transitively) share the key, the smallest word bag of the group. A bag on more
    than `LABEL_SHARE` of the images (and more than `LABEL_MIN`) links nothing: a label (a
    category caption, a captioner's constant output), not a scene, and would put whole
    categories on one side."""
    holders: dict[str, set[str]] = {}
    for text, image_id in zip(texts, image_ids, strict=True):
        holders.setdefault(word_bag(text), set()).add(image_id)
    limit = max(LABEL_MIN, LABEL_SHARE * len(set(image_ids)))
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for text, image_id in zip(texts, image_ids, strict=True):
        bag = word_bag(text)
        if len(holders[bag]) > limit:
            continue
        a, b = root(f"image:{image_id}"), root(f"words:{bag}")
        if a != b:
            parent[max(a, b)] = min(a, b)
    smallest: dict[str, str] = {}
    for node in list(parent):
        if node.startswith("words:"):
            top = root(node)
            smallest[top] = min(smallest.get(top, node), node)
    return {
        image_id: smallest.get(root(f"image:{image_id}"), f"image:{image_id}")
        for image_id in set(image_ids)
    }


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
    grouping: str = "image_id"

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

    def as_dict(self) -> dict:
        """The id lists and the grouping rule (`GROUPINGS`), JSON-ready."""
        return {**{name: list(self.of(name)) for name in SPLITS}, "grouping": self.grouping}

    @classmethod
    def from_dict(cls, record: Mapping, keep: Collection[str] | None = None) -> Split:
        """A recorded split (without a grouping: the old rule, by image id), less ids not in
        `keep` when given."""
        sides = {
            name: tuple(i for i in record[name] if keep is None or i in keep) for name in SPLITS
        }
        return cls(**sides, grouping=record.get("grouping", "image_id"))

    def grouping_rule(self) -> str:
        """The grouping in words."""
        return f"{self.grouping}: {GROUPINGS.get(self.grouping, 'unknown rule')}"


def three_way_split(
    image_ids: Sequence[str],
    test_fraction: float,
    validation_fraction: float,
    salt: str = DEFAULT_SALT,
    forced_test: Collection[str] = (),
    groups: Mapping[str, str] | None = None,
) -> Split:
    """Split distinct `image_ids` into train / validation / test (see `Split`). With `groups`
    (image id -> group key, `caption_groups`), each group is scored by its key and lands on
    one side whole; a group with a forced image is test whole."""
    if not (test_fraction > 0.0 and validation_fraction >= 0.0) or (
        test_fraction + validation_fraction >= 1.0
    ):
        raise ValueError(
            f"need 0 < test_fraction, 0 <= validation_fraction and a sum below 1, got"
            f" {test_fraction} and {validation_fraction}"
        )
    forced = set(forced_test)
    if groups is not None:
        forced_groups = {groups.get(i, i) for i in forced}
        forced = {i for i in image_ids if groups.get(i, i) in forced_groups}
    sides: dict[str, list[str]] = {name: [] for name in SPLITS}
    for image_id in sorted(set(image_ids)):
        key = groups.get(image_id, image_id) if groups is not None else image_id
        score = held_out_score(key, salt)
        if image_id in forced or score < test_fraction:
            sides["test"].append(image_id)
        elif score < test_fraction + validation_fraction:
            sides["validation"].append(image_id)
        else:
            sides["train"].append(image_id)
    grouping = "image_id" if groups is None else "caption_words"
    return Split(*(tuple(sides[name]) for name in SPLITS), grouping=grouping)


def leaked_test_images(split: Split, texts: Sequence[str], image_ids: Sequence[str]) -> int:
    """How many test images have a text with the bag of words of a training image's text (a
    leak across the split; 0 for a `caption_words` split of the same texts)."""
    train = set(split.train)
    trained = {word_bag(t) for t, i in zip(texts, image_ids, strict=True) if i in train}
    test = set(split.test)
    return len(
        {i for t, i in zip(texts, image_ids, strict=True) if i in test and word_bag(t) in trained}
    )


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
