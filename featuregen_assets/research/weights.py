"""Which weights a report was computed with, and what they license.

The tiny profile's models are random networks (architecture-identical, built locally): a
report on them validates the pipeline and says nothing about what DINOv2 learned. Only a
pretrained image model (and, for the text side, a pretrained text tower) makes a finding.
"""

from __future__ import annotations

from pathlib import Path

from featuregen_assets.research.answer_text import say
from featuregen_assets.research.sentence_encoder import MODEL_ID as MINILM

TINY = "tiny"


def is_tiny(model: str) -> bool:
    """True for a tiny-profile model: its id `tiny/<build>[@…]` or its `<dir>/tiny/<build>` path."""
    return model.startswith(f"{TINY}/") or Path(model.split("@")[0]).parent.name == TINY


def weights_record(embedding_model: str, text_tower: str, sentence_encoder: bool) -> dict:
    """The models a report used, each with whether its weights are pretrained."""
    record = {
        "embedding_model": {"model": embedding_model, "pretrained": not is_tiny(embedding_model)},
        "text_tower": {"model": text_tower, "pretrained": not is_tiny(text_tower)},
    }
    if sentence_encoder:
        record["sentence_encoder"] = {"model": MINILM, "pretrained": True}
    return record


def describe(record: dict) -> str:
    """One line for the report's header: each model and whether it is pretrained."""
    return "; ".join(
        f"{role.replace('_', ' ')} `{m['model']}` ("
        + ("pretrained" if m["pretrained"] else "random weights, tiny profile")
        + ")"
        for role, m in record.items()
    )


def licence_answer(record: dict) -> str:
    """The report's first answer: what these weights let its answers say."""
    image = record["embedding_model"]
    text = record.get("text_tower", {"model": None, "pretrained": True})  # none: a probe
    if not image["pretrained"]:
        too = "pretrained" if text["pretrained"] else "random"
        return say("weights_random", image=image["model"], text_too=too)
    if not text["pretrained"]:
        return say("weights_random_text", image=image["model"], text=text["model"])
    if text["model"] is None:
        return say("weights_image_only", image=image["model"])
    return say("weights_pretrained", image=image["model"], text=text["model"])
