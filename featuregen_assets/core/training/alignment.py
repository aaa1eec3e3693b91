"""Align a text tower with frozen DINOv2 image vectors (LiT / Talk2DINO recipes).

The tower is a CLIP text model (a CLIP checkpoint's text half), or any other transformers
text encoder (e.g. all-MiniLM-L6-v2, a BERT, frozen under Talk2DINO with mean pooling).

The image side never changes: targets are the stored DINOv2 vectors. The text side is
trained contrastively so that a text lands near the vectors of the images it describes.
This module holds the encoder, its loss and its config; `alignment_training` trains it.

Search space. Queries from `AlignedTextEncoder.encode` live in the space of the *stored*
unit vectors and are compared with them by cosine, as pgvector does. With
`standardize_targets`, training compares a unit text vector `t` with the standardised image
vector `z = (v - mean) / std / sqrt(d)` by the plain inner product `t . z` (no per-image
re-normalisation). For a fixed query, `t . z = (t / std) . v / sqrt(d) - const`, so ranking
stored unit vectors `v` by cosine to `q = normalize(t / std)` is exactly the training-time
text->image ranking. The stored vectors stay untouched; the standardisation lives in the
text encoder (its mean/std buffers) and is applied on the query side only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    CLIPTextConfig,
    CLIPTextModel,
    PreTrainedModel,
)

from featuregen_assets.core.training.common import (
    load_weights,
    mixed_precision,
    read_model_config,
    save_model_dir,
)
from featuregen_assets.core.training.splits import (
    DEFAULT_SALT,
    GROUPINGS,
)

RECIPES = ("lit", "talk2dino", "projection")
LOSSES = ("infonce", "siglip")
POOLINGS = ("eos", "mean")
FORMAT = "featuregen-aligned-text-encoder/1"


@dataclass(frozen=True)
class AlignmentConfig:
    """How to train the text side. Reproducible from these fields alone.

    The defaults are tuned for the tiny profile's randomly initialised tower (the offline
    demo: ~500 captions, ~20 s on 2 CPU cores). A pretrained tower (the real profile) wants a
    much lower lr for "lit" (1e-5..1e-4) and ~1e-3 for the frozen-tower recipes.

    recipe: "lit" trains the whole text tower plus a linear projection (or only the
      tower's last `train_last_layers` layers); "talk2dino" freezes the tower and trains a
      Linear-tanh-Linear projection; "projection" freezes the tower and trains a linear one.
    loss: "infonce" (symmetric, learnable temperature, init 1/0.07, scale clamped at 100) or
      "siglip" (pairwise sigmoid, learnable t = 10 and b = -10 at init, as SigLIP).
    pooling: "eos" takes the last non-padding token (CLIP's EOS pooling), "mean" averages.
    standardize_targets: standardise image vectors with train mean/std (stored in the model).
    dropout: the text tower's hidden and attention dropout while training (CLIP's is 0).
    held_out_fraction / validation_fraction: the shares of images (by id score) kept for test
      and validation; `test_phrases`: images with a text containing one of them are test
      images too (a compositional split). Tuning reads validation (`eval_every`); test is
      scored once, at the end.
    split_grouping: "caption_words" keeps images whose texts share a bag of words (colour-swap
      twins) on one side of the split; "image_id" splits image by image (`splits.GROUPINGS`).
    keep_best: end with the weights of the best validation recall@5 (ties: the earlier);
      `patience`: stop after this many evaluations without a better one (None: never),
      whether or not the best weights are kept.
    text_views: with probability `view_probability` a training caption is replaced by one of
      its partial or reordered views (`text_views`), so partial queries work.
    device: "cpu", "cuda" or "auto"; bf16 autocast on CUDA when `autocast` is set.
    max_steps: stop after this many optimiser steps (tests, benchmarks); None = all epochs.
    """

    recipe: str = "lit"
    train_last_layers: int | None = None
    loss: str = "infonce"
    pooling: str = "eos"
    epochs: int = 100
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    seed: int = 0
    max_length: int = 64
    standardize_targets: bool = True
    dropout: float = 0.1
    held_out_fraction: float = 0.2
    validation_fraction: float = 0.1
    test_phrases: tuple[str, ...] = ()
    split_salt: str = DEFAULT_SALT
    split_grouping: str = "caption_words"
    text_views: bool = True
    view_probability: float = 0.5
    eval_every: int = 10
    keep_best: bool = True
    patience: int | None = 3
    device: str = "auto"
    autocast: bool = True
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.split_grouping not in GROUPINGS:
            raise ValueError(
                f"split_grouping must be one of {sorted(GROUPINGS)}, got {self.split_grouping!r}"
            )
        if self.train_last_layers is not None and self.recipe != "lit":
            raise ValueError("train_last_layers applies to the 'lit' recipe only")


def _make_head(recipe: str, hidden: int, target_dim: int) -> nn.Module:
    if recipe == "talk2dino":
        return nn.Sequential(
            nn.Linear(hidden, target_dim), nn.Tanh(), nn.Linear(target_dim, target_dim)
        )
    return nn.Linear(hidden, target_dim)


CLIP_TYPES = ("clip", "clip_text_model")


def load_tower(text_tower: str | Path, dropout: float) -> PreTrainedModel:
    """The text tower of a checkpoint: CLIP's text model, else the checkpoint's own model
    (a BERT-style sentence encoder), with `dropout` on its hidden states and attention."""
    model_type = AutoConfig.from_pretrained(text_tower).model_type
    if model_type in CLIP_TYPES:
        config = CLIPTextConfig.from_pretrained(text_tower)
        config.dropout = config.attention_dropout = dropout
        return CLIPTextModel.from_pretrained(text_tower, config=config)
    config = AutoConfig.from_pretrained(
        text_tower, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout
    )
    return AutoModel.from_pretrained(text_tower, config=config)


def tower_from_config(text_config: dict) -> PreTrainedModel:
    """An untrained tower of a saved encoder's `text_config` (weights loaded after)."""
    values = dict(text_config)
    model_type = values.pop("model_type", "clip_text_model")
    if model_type in CLIP_TYPES:
        return CLIPTextModel(CLIPTextConfig(**values))
    return AutoModel.from_config(AutoConfig.for_model(model_type, **values))


class AlignedTextEncoder(nn.Module):
    """Text tower + projection into the stored DINOv2 vector space."""

    def __init__(
        self,
        tower: PreTrainedModel,
        tokenizer,
        target_dim: int,
        *,
        recipe: str = "lit",
        pooling: str = "eos",
        max_length: int = 64,
        training_config: dict | None = None,
    ) -> None:
        super().__init__()
        self.tower = tower
        self.tokenizer = tokenizer
        self.recipe = recipe
        self.pooling = pooling
        self.max_length = max_length
        self.target_dim = target_dim
        self.training_config = training_config or {}
        self.head = _make_head(recipe, tower.config.hidden_size, target_dim)
        self.register_buffer("feature_mean", torch.zeros(target_dim))
        self.register_buffer("feature_std", torch.ones(target_dim))

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, padded to the longest text, truncated at max_length."""
        max_len = min(self.max_length, self.tower.config.max_position_embeddings)
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The tower's pooled text feature (hidden size)."""
        hidden = self.tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.to(hidden.dtype)
        if self.pooling == "mean":
            return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (attention_mask * positions).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit text vectors in the training (standardised) space."""
        return F.normalize(self.head(self.pool(input_ids, attention_mask)).float(), dim=-1)

    def to_stored_space(self, unit: torch.Tensor) -> torch.Tensor:
        """Map training-space text vectors to queries for the stored unit vectors (cosine)."""
        return F.normalize(unit.float() / self.feature_std, dim=-1)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """L2-normalised query vectors, comparable by cosine with the stored image vectors."""
        was_training = self.training
        self.eval()
        device = self.feature_std.device
        out = []
        for start in range(0, len(texts), batch_size):
            batch = {
                k: v.to(device) for k, v in self.tokenize(texts[start : start + batch_size]).items()
            }
            with mixed_precision(device, enabled=True):
                unit = self(**batch)
            out.append(self.to_stored_space(unit).cpu())
        self.train(was_training)
        if not out:
            return np.zeros((0, self.target_dim), dtype=np.float32)
        return torch.cat(out).numpy().astype(np.float32)

    def save(self, directory: str | Path, metrics: dict | None = None) -> Path:
        """Write model.safetensors, the tokenizer and config.json (+ metrics) into `directory`."""
        config = {
            "format": FORMAT,
            "recipe": self.recipe,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "target_dim": self.target_dim,
            "text_config": self.tower.config.to_dict(),
            "training_config": self.training_config,
        }
        directory = save_model_dir(self, directory, config, metrics)
        self.tokenizer.save_pretrained(directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> AlignedTextEncoder:
        """Rebuild a saved encoder (no network: the tower is built from the stored config)."""
        config = read_model_config(directory, FORMAT)
        encoder = cls(
            tower_from_config(config["text_config"]),
            AutoTokenizer.from_pretrained(directory),
            config["target_dim"],
            recipe=config["recipe"],
            pooling=config["pooling"],
            max_length=config["max_length"],
            training_config=config.get("training_config"),
        )
        return load_weights(encoder, directory, device)


class ContrastiveLoss(nn.Module):
    """Symmetric multi-positive InfoNCE or SigLIP's sigmoid loss over a batch of pairs.

    `positives[a, b]` is True when text a and image b form a pair; texts shared by several
    images (category captions) and images with several texts give several positives per
    row, so a duplicate is never pushed away as a negative.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "infonce":
            self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
            self.bias = None
        else:
            self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
            self.bias = nn.Parameter(torch.tensor(-10.0))

    def scale(self) -> torch.Tensor:
        """The current logit scale (InfoNCE: clamped at 100)."""
        if self.kind == "infonce":
            return self.log_scale.clamp(max=math.log(100.0)).exp()
        return self.log_scale.exp()

    def forward(self, text: torch.Tensor, image: torch.Tensor, positives: torch.Tensor):
        logits = self.scale() * text.float() @ image.float().T
        if self.kind == "siglip":
            labels = positives.float() * 2 - 1
            return -F.logsigmoid(labels * (logits + self.bias)).sum() / len(text)
        neg_inf = torch.finfo(logits.dtype).min
        t2i = logits.logsumexp(1) - logits.masked_fill(~positives, neg_inf).logsumexp(1)
        i2t = logits.logsumexp(0) - logits.masked_fill(~positives, neg_inf).logsumexp(0)
        return (t2i.mean() + i2t.mean()) / 2


def _build_encoder(text_tower: str | Path, target_dim: int, config: AlignmentConfig):
    tower = load_tower(text_tower, config.dropout)
    tokenizer = AutoTokenizer.from_pretrained(text_tower)
    torch.manual_seed(config.seed)
    encoder = AlignedTextEncoder(
        tower,
        tokenizer,
        target_dim,
        recipe=config.recipe,
        pooling=config.pooling,
        max_length=config.max_length,
        training_config=asdict(config),
    )
    if config.recipe != "lit":
        encoder.tower.requires_grad_(False)
    elif config.train_last_layers is not None:
        encoder.tower.requires_grad_(False)
        layers = encoder.tower.encoder.layers
        for layer in layers[len(layers) - config.train_last_layers :]:
            layer.requires_grad_(True)
        encoder.tower.final_layer_norm.requires_grad_(True)
    return encoder


def initial_encoder(
    text_tower: str | Path, train_vectors: np.ndarray, config: AlignmentConfig
) -> AlignedTextEncoder:
    """The encoder before training (seeded head; with `standardize_targets`, the training
    images' mean and std): the "untrained" comparator, and where training starts."""
    encoder = _build_encoder(text_tower, train_vectors.shape[1], config)
    if config.standardize_targets:
        encoder.feature_mean.copy_(torch.from_numpy(train_vectors.mean(0)))
        encoder.feature_std.copy_(torch.from_numpy(train_vectors.std(0) + 1e-6))
    return encoder


def config_from_record(record: dict) -> AlignmentConfig:
    """The AlignmentConfig a saved encoder's `training_config` records."""
    known = {f.name for f in fields(AlignmentConfig)}
    values = {k: v for k, v in record.items() if k in known}
    values["test_phrases"] = tuple(values.get("test_phrases", ()))
    return AlignmentConfig(**values)
