"""The learned variants the report can train, by name (no heavy imports: the CLI reads it)."""

from __future__ import annotations

from collections.abc import Sequence

VARIANTS: dict[str, str] = {
    "talk2dino": "frozen text tower + Linear-tanh-Linear head (Talk2DINO), lr 1e-3",
    "siglip": "LiT with SigLIP's pairwise sigmoid loss",
    "cls_mean": "LiT on CLS ⊕ mean-patch image vectors (images embedded again)",
}
# What `featuregen report` and the demo train unless told otherwise. At the demo's scale the
# registered LiT encoder took 379 CPU s, talk2dino 50 (its frozen tower pooled once); siglip
# and cls_mean run the LiT's steps again (cls_mean also embeds every image again), so they are
# chosen with --variants.
DEFAULT_VARIANTS = ("talk2dino",)


def method_name(variant: str) -> str:
    """The variant's method name in the report's rows."""
    return f"{variant}_encoder"


def parse_variants(names: str | Sequence[str]) -> tuple[str, ...]:
    """Variant names from a comma-separated string or a list; unknown ones are an error."""
    if isinstance(names, str):
        names = names.split(",")
    chosen = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    unknown = [n for n in chosen if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    return chosen
