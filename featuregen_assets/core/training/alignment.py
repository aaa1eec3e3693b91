"""Align a text tower with frozen DINOv2 image vectors (LiT / Talk2DINO recipes).

The tower is a CLIP text model (a CLIP checkpoint's text half), or any other transformers
text encoder (e.g. all-MiniLM-L6-v2, a BERT, frozen under Talk2DINO with mean pooling).

The image side never changes: targets are the stored DINOv2 vectors. The text side is
trained contrastively so that a text lands near the vectors of the images it describes.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
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
    BestWeights,
    load_weights,
    mixed_precision,
    optimiser_and_schedule,
    optimiser_step,
    read_model_config,
    save_model_dir,
    time_left,
    training_device,
)
from featuregen_assets.core.training.metrics import retrieval_metrics
from featuregen_assets.core.training.splits import (
    DEFAULT_SALT,
    GROUPINGS,
    Split,
    caption_groups,
    images_mentioning,
    three_way_split,
    word_bag,
)
from featuregen_assets.core.training.text_views import text_views

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


@dataclass
class TrainResult:
    """A trained encoder, its test metrics, the per-epoch loss curve and the split it used."""

    encoder: AlignedTextEncoder
    metrics: dict = field(default_factory=dict)
    loss_curve: list[float] = field(default_factory=list)
    split: Split | None = None


@dataclass
class _Pairs:
    """Unique texts, unique images and (text, image) index pairs."""

    texts: list[str]
    image_ids: list[str]
    vectors: np.ndarray
    text_idx: np.ndarray
    image_idx: np.ndarray

    def add_views(self, texts: Sequence[int]) -> np.ndarray:
        """Append the views of `texts` to the text list; (texts, most views) index matrix,
        each row its views then -1 padding."""
        rows = []
        position = {t: i for i, t in enumerate(self.texts)}
        for t in texts:
            row = []
            for view in text_views(self.texts[t]):
                if view not in position:
                    position[view] = len(self.texts)
                    self.texts.append(view)
                row.append(position[view])
            rows.append(row)
        width = max((len(r) for r in rows), default=0)
        return np.array([r + [-1] * (width - len(r)) for r in rows], dtype=np.int64).reshape(
            len(rows), width
        )


def _index_pairs(texts: Sequence[str], image_ids: Sequence[str], vectors: np.ndarray) -> _Pairs:
    if not (len(texts) == len(image_ids) == len(vectors)):
        raise ValueError("texts, image_ids and vectors must have one row per pair")
    text_pos: dict[str, int] = {}
    image_pos: dict[str, int] = {}
    rows: list[int] = []
    seen: set[tuple[int, int]] = set()
    t_idx, i_idx = [], []
    for row, (text, image_id) in enumerate(zip(texts, image_ids, strict=True)):
        t = text_pos.setdefault(text, len(text_pos))
        if image_id not in image_pos:
            image_pos[image_id] = len(image_pos)
            rows.append(row)
        pair = (t, image_pos[image_id])
        if pair not in seen:
            seen.add(pair)
            t_idx.append(pair[0])
            i_idx.append(pair[1])
    unit = np.asarray(vectors, dtype=np.float32)[rows]
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True).clip(1e-12)
    return _Pairs(list(text_pos), list(image_pos), unit, np.array(t_idx), np.array(i_idx))


def evaluate_retrieval(
    encoder: AlignedTextEncoder,
    texts: Sequence[str],
    vectors: np.ndarray,
    positives: np.ndarray,
) -> dict[str, float]:
    """Text->image retrieval exactly as search does it: encode, cosine to stored vectors."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    return retrieval_metrics(encoder.encode(list(texts)) @ unit.T, positives)


def _caption_queries(
    data: _Pairs, images: np.ndarray, trained: set[int]
) -> tuple[list[str], np.ndarray]:
    """Each distinct text of `images` whose bag of words no `trained` text has, as a query;
    positives over `images` (columns)."""
    column = {int(img): c for c, img in enumerate(images)}
    trained_bags = {word_bag(data.texts[t]) for t in trained}
    pairs = [
        p
        for p in range(len(data.text_idx))
        if int(data.image_idx[p]) in column
        and word_bag(data.texts[int(data.text_idx[p])]) not in trained_bags
    ]
    query_texts = sorted({int(data.text_idx[p]) for p in pairs})
    row = {t: r for r, t in enumerate(query_texts)}
    positives = np.zeros((len(query_texts), len(images)), dtype=bool)
    for p in pairs:
        positives[row[int(data.text_idx[p])], column[int(data.image_idx[p])]] = True
    return [data.texts[t] for t in query_texts], positives


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


def _latest_validation(history: list[dict[str, float]], untrained: dict[str, float]) -> str:
    """The latest validation recall@5 and the epoch it was measured at (before training:
    the untrained encoder's)."""
    if history:
        return f"validation recall@5 {history[-1]['recall@5']:.3f} (epoch {history[-1]['epoch']})"
    if untrained:
        return f"validation recall@5 {untrained['recall@5']:.3f} (untrained)"
    return "no validation images"


def config_from_record(record: dict) -> AlignmentConfig:
    """The AlignmentConfig a saved encoder's `training_config` records."""
    known = {f.name for f in fields(AlignmentConfig)}
    values = {k: v for k, v in record.items() if k in known}
    values["test_phrases"] = tuple(values.get("test_phrases", ()))
    return AlignmentConfig(**values)


def train_alignment(
    texts: Sequence[str],
    image_ids: Sequence[str],
    vectors: np.ndarray,
    text_tower: str | Path,
    config: AlignmentConfig,
    *,
    log: Callable[[str], None] = print,
    split: Split | None = None,
) -> TrainResult:
    """Train a text encoder into the space of frozen image vectors.

    Row i pairs `texts[i]` with image `image_ids[i]`, whose stored vector is `vectors[i]`
    (an image with several texts repeats its vector). `text_tower` is a CLIP checkpoint
    directory or hub id holding a CLIPTextModel and its tokenizer. Images are split into
    train / held out by id (or as `split` says: a standard protocol's split); metrics are
    held-out text->image retrieval among the held-out images, beside chance and the same
    encoder before training.
    """
    device = training_device(config.device)
    data = _index_pairs(texts, image_ids, vectors)
    if split is None:
        split = three_way_split(
            data.image_ids,
            config.held_out_fraction,
            config.validation_fraction,
            config.split_salt,
            forced_test=images_mentioning(texts, image_ids, config.test_phrases),
            groups=caption_groups(texts, image_ids)
            if config.split_grouping == "caption_words"
            else None,
        )
    elif set(data.image_ids) - {*split.train, *split.validation, *split.test}:
        raise ValueError("the given split leaves out images of the pairs")
    side = {i: name for name in ("train", "validation", "test") for i in split.of(name)}
    image_side = np.array([side[i] for i in data.image_ids])
    train_images = np.flatnonzero(image_side == "train")
    test_images = np.flatnonzero(image_side == "test")
    validation_images = np.flatnonzero(image_side == "validation")
    train_pairs = np.flatnonzero(image_side[data.image_idx] == "train")
    if len(train_pairs) == 0:
        raise ValueError("no training pairs: need at least two distinct images")

    encoder = initial_encoder(text_tower, data.vectors[train_images], config).to(device)
    targets = torch.from_numpy(data.vectors).to(device)
    targets = (targets - encoder.feature_mean) / encoder.feature_std
    if config.standardize_targets:
        targets = targets / math.sqrt(targets.shape[1])

    # queries: each distinct text of an image of the split that no training image has;
    # positives: its images there
    train_texts = sorted({int(data.text_idx[p]) for p in train_pairs})
    test_texts, test_positives = _caption_queries(data, test_images, set(train_texts))
    validation_texts, validation_positives = _caption_queries(
        data, validation_images, set(train_texts)
    )

    def evaluate(on_validation: bool = False) -> dict[str, float]:
        images, queries, positives = (
            (validation_images, validation_texts, validation_positives)
            if on_validation
            else (test_images, test_texts, test_positives)
        )
        if not queries:
            return {}
        return evaluate_retrieval(encoder, queries, data.vectors[images], positives)

    views = torch.full((len(data.texts), 1), -1, dtype=torch.long)
    if config.text_views:
        matrix = data.add_views(train_texts)
        views = torch.full((len(data.texts), max(1, matrix.shape[1])), -1, dtype=torch.long)
        if matrix.size:
            views[torch.tensor(train_texts)] = torch.from_numpy(matrix)
    view_counts = (views >= 0).sum(1).to(device)
    views = views.to(device)

    untrained = evaluate()
    untrained_validation = evaluate(on_validation=True)
    log(
        f"alignment: {len(data.texts)} texts and views, {len(data.image_ids)} images "
        f"({len(train_images)} train / {len(validation_images)} validation / {len(test_images)}"
        f" test), {len(train_pairs)} train "
        f"pairs, recipe={config.recipe}, loss={config.loss}, device={device}; untrained "
        f"test recall@5 {untrained.get('recall@5', float('nan')):.3f}"
    )

    tokens = encoder.tokenize(data.texts)
    tokens = {k: v.to(device) for k, v in tokens.items()}
    tower_frozen = not any(p.requires_grad for p in encoder.tower.parameters())
    cached = None
    if tower_frozen:  # the tower never changes: pool every text once
        encoder.eval()
        with torch.no_grad(), mixed_precision(device, config.autocast):
            cached = torch.cat(
                [
                    encoder.pool(
                        tokens["input_ids"][s : s + 256], tokens["attention_mask"][s : s + 256]
                    ).float()
                    for s in range(0, len(data.texts), 256)
                ]
            )

    criterion = ContrastiveLoss(config.loss).to(device)
    params = [p for p in encoder.parameters() if p.requires_grad] + list(criterion.parameters())
    optimizer, scheduler, total = optimiser_and_schedule(
        params, config, math.ceil(len(train_pairs) / config.batch_size)
    )
    generator = torch.Generator().manual_seed(config.seed)
    text_idx = torch.from_numpy(data.text_idx).to(device)
    image_idx = torch.from_numpy(data.image_idx).to(device)
    train_tensor = torch.from_numpy(train_pairs)

    loss_curve: list[float] = []
    history: list[dict[str, float]] = []
    best = BestWeights(keep=config.keep_best)
    step, samples, started = 0, 0, time.perf_counter()
    encoder.train()
    for epoch in range(1, config.epochs + 1):
        order = train_tensor[torch.randperm(len(train_tensor), generator=generator)].to(device)
        losses = []
        for start in range(0, len(order), config.batch_size):
            if step >= total:
                break
            batch = order[start : start + config.batch_size]
            t, i = text_idx[batch], image_idx[batch]
            t = _sample_views(t, views, view_counts, config.view_probability, generator)
            pos = (t[:, None] == t[None, :]) | (i[:, None] == i[None, :])
            with mixed_precision(device, config.autocast):
                if cached is not None:
                    text = F.normalize(encoder.head(cached[t]).float(), dim=-1)
                else:
                    ids, mask = tokens["input_ids"][t], tokens["attention_mask"][t]
                    width = int(mask.sum(1).max())
                    text = encoder(ids[:, :width], mask[:, :width])
                loss = criterion(text, targets[i], pos)
            losses.append(optimiser_step(loss, optimizer, scheduler))
            step += 1
            samples += len(batch)
        if not losses:
            break
        loss_curve.append(float(np.mean(losses)))
        if config.eval_every and epoch % config.eval_every == 0 and validation_texts:
            history.append({"epoch": epoch, **evaluate(on_validation=True)})
            best.offer(history[-1]["recall@5"], epoch, encoder)
        log(
            f"epoch {epoch}/{config.epochs}: loss {loss_curve[-1]:.4f},"
            f" lr {scheduler.get_last_lr()[0]:.2e}, scale {criterion.scale().item():.1f},"
            f" {_latest_validation(history, untrained_validation)},"
            f" {time_left(started, step, total)}"
        )
        if config.patience and best.stale >= config.patience:
            log(f"stopping at epoch {epoch}: validation recall@5 last improved at {best.epoch}")
            break
    seconds = time.perf_counter() - started
    if best.state is not None:
        encoder.load_state_dict(best.state)
        log(f"kept epoch {best.epoch}'s weights (validation recall@5 {best.value:.3f})")

    encoder.eval()
    final = evaluate()
    validation = evaluate(on_validation=True)
    metrics: dict = {
        "train_images": len(train_images),
        "validation_images": len(validation_images),
        "held_out_images": len(test_images),
        "training_texts_with_views": len(data.texts),
        "train_pairs": len(train_pairs),
        "steps": step,
        "train_seconds": seconds,
        "samples_per_s": samples / seconds if seconds else 0.0,
        "logit_scale": criterion.scale().item(),
        **final,
        **{f"untrained_{k}": v for k, v in untrained.items() if not k.startswith("chance")},
        **{f"validation_{k}": v for k, v in validation.items() if not k.startswith("chance")},
        "split_hashes": split.hashes(),
        "epoch_losses": loss_curve,
        "eval_history": history,
        "kept_epoch": best.epoch if best.state is not None else len(loss_curve),
    }
    if final:
        log(
            f"alignment done in {seconds:.1f}s: test recall@1/5/10 "
            f"{final['recall@1']:.3f}/{final['recall@5']:.3f}/{final['recall@10']:.3f} "
            f"(chance {final['chance_recall@5']:.3f} @5, untrained {untrained['recall@5']:.3f}), "
            f"median rank {final['median_rank']:.0f} of {len(test_images)}"
        )
    return TrainResult(encoder=encoder.cpu(), metrics=metrics, loss_curve=loss_curve, split=split)


def _sample_views(
    texts: torch.Tensor,
    views: torch.Tensor,
    counts: torch.Tensor,
    probability: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Replace each text index by a random one of its views with `probability` (texts with no
    views stay)."""
    if probability <= 0 or views.shape[1] == 0:
        return texts
    draw = torch.rand(len(texts), generator=generator).to(texts.device)
    pick = torch.rand(len(texts), generator=generator).to(texts.device)
    column = (pick * counts[texts]).long().clamp(max=views.shape[1] - 1)
    chosen = views[texts, column]
    use = (draw < probability) & (counts[texts] > 0) & (chosen >= 0)
    return torch.where(use, chosen, texts)
