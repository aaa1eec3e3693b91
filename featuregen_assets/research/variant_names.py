"""The learned variants the report can train, by name (no heavy imports: the CLI reads it)."""

from __future__ import annotations

from collections.abc import Sequence

VARIANTS: dict[str, str] = {
    "talk2dino": "frozen text tower + Linear-tanh-Linear head (Talk2DINO), lr 1e-3",
    "siglip": "LiT with SigLIP's pairwise sigmoid loss",
    "cls_mean": "LiT on CLS ⊕ mean-patch image vectors (images embedded again)",
    "talk2dino_minilm": "Talk2DINO on frozen all-MiniLM-L6-v2, a pretrained sentence encoder"
    " (mean-pooled, as sentence-transformers), Linear-tanh-Linear head, lr 1e-3",
    "lit": "LiT as the registered encoder, retrained at the variants' epochs (the like-for-like"
    " reference when the variants train shorter than the encoder did)",
}
# What `featuregen report` trains unless told otherwise: every variant the research issue
# lists, each at the registered encoder's epochs (`lit` adds nothing then). The demo trains
# them and `lit` at its own few epochs (demo/report_budget.py), as `featuregen report` does on
# the demo's inputs.
DEFAULT_VARIANTS = ("talk2dino", "siglip", "cls_mean", "talk2dino_minilm")


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
