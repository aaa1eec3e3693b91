"""The tiny models: architecture-identical, random-weight builds of the real ones.

Each is built once, deterministically (fixed seed, random weights, a small word-level
tokenizer over the demo's words), into ``<models dir>/tiny/<build>/`` with ``save_pretrained``;
the ``tiny`` profile then loads them through the same ``from_pretrained`` path as hub ids
(`core.vision.model_profiles.tiny_dir`). The demo and the tests build them;
``featuregen models build-tiny`` does for anyone else.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from featuregen_assets.core.vision.model_profiles import TINY_ROLES, tiny_dir
from featuregen_assets.demo.scenes import CATEGORIES

TINY_SEED = 0
# Each role's build number: raised when its builder changes, so existing homes rebuild it.
BUILDS = {"image_embedder": 2, "captioner": 1, "text_tower": 1}
BUILD_STAMP = "featuregen-tiny-build"

QWEN2VL_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen/Qwen2-VL-2B-Instruct's chat template.
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Words of the chat prompt and of the synthetic demo's captions (colours, shapes, sizes,
# positions, categories), so tiny tokenizers see few unknown words.
TINY_WORDS = tuple(
    dict.fromkeys(
        [
            "a",
            "an",
            "the",
            "and",
            "or",
            "of",
            "at",
            "in",
            "on",
            "to",
            "with",
            "by",
            "for",
            "from",
            "near",
            "next",
            "beside",
            "behind",
            "above",
            "below",
            "is",
            "are",
            "this",
            "that",
            "it",
            "its",
            "one",
            "two",
            "three",
            "four",
            "some",
            "there",
            "here",
            "scene",
            "image",
            "photo",
            "picture",
            "you",
            "helpful",
            "assistant",
            "system",
            "user",
            "describe",
            "english",
            "sentence",
            "fit",
            "search",
            "index",
            "red",
            "green",
            "blue",
            "yellow",
            "orange",
            "purple",
            "pink",
            "brown",
            "black",
            "white",
            "gray",
            "grey",
            "cyan",
            "magenta",
            "dark",
            "light",
            "bright",
            "pale",
            "circle",
            "square",
            "triangle",
            "rectangle",
            "star",
            "ellipse",
            "oval",
            "diamond",
            "cross",
            "ring",
            "line",
            "stripe",
            "hexagon",
            "pentagon",
            "disk",
            "box",
            "bar",
            "dot",
            "shape",
            "shapes",
            "object",
            "objects",
            "person",
            "people",
            "car",
            "cars",
            "small",
            "medium",
            "large",
            "big",
            "tiny",
            "huge",
            "top",
            "bottom",
            "left",
            "right",
            "center",
            "centre",
            "middle",
            "upper",
            "lower",
            "corner",
            "side",
            # the demo's categories: their words, then the names of more than one word
            *(word for category in CATEGORIES for word in category.split("_")),
            *(category for category in CATEGORIES if "_" in category),
            "store",
            "market",
            "table",
            "counter",
            "shelf",
            "window",
            "wall",
            "floor",
            "background",
            "texture",
            # the demo's paraphrase queries (demo/scenes/queries.py): never in a training caption
            "amber",
            "block",
            "brawl",
            "coffeehouse",
            "crash",
            "crimson",
            "diner",
            "disc",
            "during",
            "emerald",
            "golden",
            "grocery",
            "hall",
            "hoop",
            "inside",
            "ivory",
            "jet",
            "little",
            "navy",
            "pentagram",
            "plus",
            "teller",
            "theft",
            "urban",
            "violet",
            "wedge",
        ]
    )
)
TINY_PUNCTUATION = (".", ",", ":", ";", "!", "?", "'", '"', "-", "(", ")")


def ensure_tiny_models(models_dir: Path) -> Path:
    """`models_dir`, with every role's tiny model built in it if missing (see `ensure_tiny`)."""
    for role in TINY_ROLES:
        ensure_tiny(role, models_dir)
    return models_dir


def ensure_tiny(role: str, models_dir: Path) -> Path:
    """Build the tiny model of ``role`` unless its current build is present; safe when
    processes race to build it.

    The build goes to a temporary directory beside the target and is renamed into place under
    an exclusive file lock, so a reader never sees a half-written model. A model from an
    earlier build (`BUILDS`) is replaced: a home made before the change gets the new one.
    """
    if role not in _BUILDERS:
        raise ValueError(f"no tiny build of model role {role!r}: expected one of {TINY_ROLES}")
    target = tiny_dir(role, models_dir)
    if _is_current(role, target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current(role, target):
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            _BUILDERS[role](tmp)
            (tmp / BUILD_STAMP).write_text(f"{BUILDS[role]}\n")
            if target.is_dir():
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_current(role: str, target: Path) -> bool:
    """Whether `target` holds the current build of `role` (no stamp: build 1)."""
    if not target.is_dir():
        return False
    stamp = target / BUILD_STAMP
    return (int(stamp.read_text()) if stamp.is_file() else 1) == BUILDS[role]


def _word_level_tokenizer(specials: tuple[str, ...], unk: str, lowercase: bool):
    """A word-level `tokenizers.Tokenizer` over TINY_WORDS (specials first)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate((*specials, unk, *TINY_PUNCTUATION, *TINY_WORDS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tok


def _build_dinov2(out: Path) -> None:
    """dinov2-small's width (384) with 2 of its 12 layers, on 112-px crops (8 x 8 patches).

    Random weights drawn at std 0.2, not DINOv2's 0.02: at 0.02 every attention map is nearly
    uniform and the CLS vector is close to an average of the patches, blind to where things are
    and to most of what they are (the demo's objects ranked no better than chance). At 0.2 the
    random attention is sharp and the CLS vector keeps enough of the scene's layout for a
    trained text encoder to find objects by colour, shape and place, as a trained DINOv2's does.
    """
    import torch
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    torch.manual_seed(TINY_SEED)
    config = Dinov2Config(
        hidden_size=384,
        num_hidden_layers=2,
        num_attention_heads=6,
        intermediate_size=384,
        patch_size=14,
        image_size=112,
        initializer_range=0.2,
    )
    Dinov2Model(config).eval().save_pretrained(out)
    # facebook/dinov2-*'s preprocessing at half the size: resize the shortest edge to 128
    # (bicubic), centre crop 112 (the real models: 256 and 224).
    BitImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": 128},
        resample=3,
        do_center_crop=True,
        crop_size={"height": 112, "width": 112},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True,
    ).save_pretrained(out)


def _build_qwen2vl(out: Path) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_word_level_tokenizer(QWEN2VL_SPECIAL_TOKENS, "<unk>", lowercase=True),
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(QWEN2VL_SPECIAL_TOKENS[1:]),
        padding_side="left",
        model_max_length=32768,
    )
    tokenizer.chat_template = QWEN2VL_CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN2VL_SPECIAL_TOKENS}
    torch.manual_seed(TINY_SEED)
    # Qwen2-VL-2B-Instruct's shape at toy size: mrope sections 2:3:3 of head_dim/2, like 16:24:24.
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": [2, 3, 3],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 4,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        # Untied (as in Qwen2-VL-7B): a tied random model just echoes its last input token.
        tie_word_embeddings=False,
    )
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessorPil(
        min_pixels=56 * 56,
        max_pixels=28 * 28 * 1280,
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    ).save_pretrained(out)


def _build_clip_text(out: Path) -> None:
    import torch
    from tokenizers.processors import TemplateProcessing
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

    specials = ("<|startoftext|>", "<|endoftext|>")
    backend = _word_level_tokenizer(specials, "<|unk|>", lowercase=True)
    bos, eos = backend.token_to_id(specials[0]), backend.token_to_id(specials[1])
    backend.post_processor = TemplateProcessing(
        single=f"{specials[0]} $A {specials[1]}",
        special_tokens=[(specials[0], bos), (specials[1], eos)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=specials[0],
        eos_token=specials[1],
        pad_token=specials[1],
        unk_token="<|unk|>",
        model_max_length=77,
    )
    torch.manual_seed(TINY_SEED)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=64,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    CLIPTextModel(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "image_embedder": _build_dinov2,
    "captioner": _build_qwen2vl,
    "text_tower": _build_clip_text,
}
