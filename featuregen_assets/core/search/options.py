"""How text queries are answered: the settings' `search` group (plain values, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from featuregen_assets.core.search.modes import LISTS

# Hybrid's weights until a research report has chosen some on its validation split. The
# aligned image list finds far less than the text lists (the demo's report: mean recall@5
# 0.12 against caption's 0.81); at equal weight it pushed right answers out of hybrid's top 5.
DEFAULT_WEIGHTS = ("image=0.25", "caption=2", "keyword=1")


@dataclass(frozen=True)
class SearchSettings:
    """default_mode: the mode a text query without one gets; None = the one the stored
    research report measures best (`default_mode.measured_default`). hybrid_weights: each
    ranked list's weight in hybrid's reciprocal-rank fusion (`<list>=<number>`; a list of
    weight 0 is not read); None = the weights the stored research report chose on its
    validation split (`default_mode.measured_weights`), else `DEFAULT_WEIGHTS`.
    random_prompts: also search the prompts of a random-weight captioner (the tiny
    profile's: noise), which caption search leaves out by default."""

    default_mode: str | None = None
    hybrid_weights: tuple[str, ...] | None = None
    random_prompts: bool = False

    def weights(self) -> dict[str, float]:
        """`hybrid_weights` (else `DEFAULT_WEIGHTS`) as {list: weight} (`parse_weights`)."""
        return parse_weights(
            DEFAULT_WEIGHTS if self.hybrid_weights is None else self.hybrid_weights
        )


def parse_weights(items: Sequence[str]) -> dict[str, float]:
    """``("image=1", "caption=2")`` → {"image": 1.0, "caption": 2.0}; ValueError if an item
    is not ``<list>=<number ≥ 0>`` of a known list."""
    weights = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or name.strip() not in LISTS or not weight >= 0:
            raise ValueError(f"a hybrid weight is <{'|'.join(LISTS)}>=<number ≥ 0>, not {item!r}")
        weights[name.strip()] = weight
    return weights
