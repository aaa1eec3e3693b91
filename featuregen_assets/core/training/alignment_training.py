"""Train an `AlignedTextEncoder` into the space of frozen image vectors (`train_alignment`):
the split by image id, held-out caption queries, text views, the contrastive training loop with
validation and its best weights, and the test figures beside the untrained encoder's."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from featuregen_assets.core.training.alignment import (
    AlignedTextEncoder,
    AlignmentConfig,
    ContrastiveLoss,
    initial_encoder,
)
from featuregen_assets.core.training.common import (
    BestWeights,
    EpochHooks,
    Fit,
    fit_epochs,
    mixed_precision,
    training_device,
)
from featuregen_assets.core.training.metrics import retrieval_metrics
from featuregen_assets.core.training.splits import (
    Split,
    caption_groups,
    images_mentioning,
    three_way_split,
    word_bag,
)
from featuregen_assets.core.training.text_views import text_views


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


def _latest_validation(history: list[dict[str, float]], untrained: dict[str, float]) -> str:
    """The latest validation recall@5 and the epoch it was measured at (before training:
    the untrained encoder's)."""
    if history:
        last = history[-1]
        return f"validation recall@5 {last['recall@5']:.3f} (measured at epoch {last['epoch']})"
    if untrained:
        return f"validation recall@5 {untrained['recall@5']:.3f} (untrained)"
    return "no validation images"


def _sides(
    data: _Pairs,
    texts: Sequence[str],
    image_ids: Sequence[str],
    config: AlignmentConfig,
    split: Split | None,
) -> tuple[Split, np.ndarray]:
    """The split (`split`, else three-way by image id, grouped as the config says) and the
    side of each distinct image of the pairs."""
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
    return split, np.array([side[i] for i in data.image_ids])


def _view_table(
    data: _Pairs, train_texts: list[int], config: AlignmentConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each text's views as text indices (-1: none; the training texts' views are added to
    `data`) and how many each has, on `device`."""
    views = torch.full((len(data.texts), 1), -1, dtype=torch.long)
    if config.text_views:
        matrix = data.add_views(train_texts)
        views = torch.full((len(data.texts), max(1, matrix.shape[1])), -1, dtype=torch.long)
        if matrix.size:
            views[torch.tensor(train_texts)] = torch.from_numpy(matrix)
    view_counts = (views >= 0).sum(1).to(device)
    return views.to(device), view_counts


def _pooled_if_frozen(
    encoder: AlignedTextEncoder,
    tokens: dict[str, torch.Tensor],
    config: AlignmentConfig,
    device: torch.device,
) -> torch.Tensor | None:
    """Every text pooled once when the tower is frozen (it never changes), else None."""
    if any(p.requires_grad for p in encoder.tower.parameters()):
        return None
    encoder.eval()
    count = len(tokens["input_ids"])
    with torch.no_grad(), mixed_precision(device, config.autocast):
        return torch.cat(
            [
                encoder.pool(
                    tokens["input_ids"][s : s + 256], tokens["attention_mask"][s : s + 256]
                ).float()
                for s in range(0, count, 256)
            ]
        )


@dataclass
class _Batches:
    """What a training step reads: each pair's text and image row, the texts' tokens (or
    their pooled vectors, the tower frozen), the target vectors and the texts' views."""

    text_idx: torch.Tensor
    image_idx: torch.Tensor
    tokens: dict[str, torch.Tensor]
    cached: torch.Tensor | None
    targets: torch.Tensor
    views: torch.Tensor
    view_counts: torch.Tensor

    def loss(self, encoder, criterion, batch, config, generator, device) -> torch.Tensor:
        """The contrastive loss of the pairs `batch` (a text may be swapped for a view)."""
        t, i = self.text_idx[batch], self.image_idx[batch]
        t = _sample_views(t, self.views, self.view_counts, config.view_probability, generator)
        pos = (t[:, None] == t[None, :]) | (i[:, None] == i[None, :])
        with mixed_precision(device, config.autocast):
            if self.cached is not None:
                text = F.normalize(encoder.head(self.cached[t]).float(), dim=-1)
            else:
                ids, mask = self.tokens["input_ids"][t], self.tokens["attention_mask"][t]
                width = int(mask.sum(1).max())
                text = encoder(ids[:, :width], mask[:, :width])
            return criterion(text, self.targets[i], pos)


def _fit(
    encoder: AlignedTextEncoder,
    criterion: ContrastiveLoss,
    batches: _Batches,
    train_pairs: np.ndarray,
    config: AlignmentConfig,
    device: torch.device,
    validate: Callable[[], dict[str, float]] | None,
    untrained_validation: dict[str, float],
    log: Callable[[str], None],
) -> tuple[Fit, list[dict[str, float]]]:
    """Train on the pairs `train_pairs`, validating every `eval_every` epochs (`validate`;
    None: no validation texts; `untrained_validation`: its figures before training), until the
    epochs or steps run out or validation stops improving (`patience`); the best validation
    epoch's weights restored. Also returns the validation history."""
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    best = BestWeights(keep=config.keep_best)

    def end_epoch(epoch: int, loss: float, lr: float) -> str:
        if config.eval_every and epoch % config.eval_every == 0 and validate:
            history.append({"epoch": epoch, **validate()})
            best.offer(history[-1]["recall@5"], epoch, encoder)
        return (
            f"loss {loss:.4f}, lr {lr:.2e}, scale {criterion.scale().item():.1f},"
            f" {_latest_validation(history, untrained_validation)}"
        )

    hooks = EpochHooks(
        batch_loss=lambda batch: batches.loss(encoder, criterion, batch, config, generator, device),
        end_epoch=end_epoch,
        stopped=lambda best: f"validation recall@5 last improved at {best.epoch}",
        kept=lambda best: f"validation recall@5 {best.value:.3f}",
    )
    params = [p for p in encoder.parameters() if p.requires_grad] + list(criterion.parameters())
    fit = fit_epochs(
        encoder,
        params,
        torch.from_numpy(train_pairs),
        config,
        hooks,
        best=best,
        generator=generator,
        device=device,
        log=log,
    )
    return fit, history


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
    split, image_side = _sides(data, texts, image_ids, config, split)
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

    views, view_counts = _view_table(data, train_texts, config, device)

    untrained = evaluate()
    untrained_validation = evaluate(on_validation=True)
    log(
        f"alignment: {len(data.texts)} texts and views, {len(data.image_ids)} images "
        f"({len(train_images)} train / {len(validation_images)} validation / {len(test_images)}"
        f" test), {len(train_pairs)} train "
        f"pairs, recipe={config.recipe}, loss={config.loss}, device={device}; untrained "
        f"test recall@5 {untrained.get('recall@5', float('nan')):.3f}"
    )

    criterion = ContrastiveLoss(config.loss).to(device)
    tokens = {k: v.to(device) for k, v in encoder.tokenize(data.texts).items()}
    batches = _Batches(
        text_idx=torch.from_numpy(data.text_idx).to(device),
        image_idx=torch.from_numpy(data.image_idx).to(device),
        tokens=tokens,
        cached=_pooled_if_frozen(encoder, tokens, config, device),
        targets=targets,
        views=views,
        view_counts=view_counts,
    )
    validate = (lambda: evaluate(on_validation=True)) if validation_texts else None
    fit, history = _fit(
        encoder,
        criterion,
        batches,
        train_pairs,
        config,
        device,
        validate,
        untrained_validation,
        log,
    )
    best, seconds = fit.best, fit.seconds
    loss_curve = fit.loss_curve

    encoder.eval()
    final = evaluate()
    validation = evaluate(on_validation=True)
    metrics: dict = {
        "train_images": len(train_images),
        "validation_images": len(validation_images),
        "held_out_images": len(test_images),
        "training_texts_with_views": len(data.texts),
        "train_pairs": len(train_pairs),
        "steps": fit.steps,
        "train_seconds": seconds,
        "samples_per_s": fit.samples / seconds if seconds else 0.0,
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
