"""Research figures on the synthetic demo data with the tiny model profile (CPU, offline).

Text -> image: the aligned text encoder (trained) vs the same encoder untrained vs chance,
for DINOv2 CLS and CLS (+) mean-of-patches vectors, beside a caption-text ceiling.
Vector -> image: the decoder vs predicting the mean image, and feature consistency.

    python benchmarks/research.py [--per-category 64] [--out benchmarks/results/research.md]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featuregen_assets.core.training.alignment import AlignmentConfig, train_alignment  # noqa: E402
from featuregen_assets.core.training.decoder import DecoderConfig, encoder_for, train_decoder  # noqa: E402
from featuregen_assets.core.training.metrics import retrieval_metrics  # noqa: E402
from featuregen_assets.core.training.splits import held_out_mask  # noqa: E402
from featuregen_assets.core.vision.compute import ComputeSettings  # noqa: E402
from featuregen_assets.core.vision.embedding import EmbeddingSettings, ImageEmbedder  # noqa: E402
from featuregen_assets.core.vision.model_profiles import resolve_models  # noqa: E402
from featuregen_assets.demo.scenes import CATEGORIES, generate_dataset  # noqa: E402
from featuregen_assets.demo.tiny_models import ensure_tiny_models  # noqa: E402

ALIGN = AlignmentConfig(device="cpu", eval_every=0)  # the defaults: tuned for the tiny profile
DECODE = DecoderConfig(device="cpu")


def _bow_scores(queries: list[str], documents: list[str]) -> np.ndarray:
    """TF-IDF bag-of-words cosine between queries and documents."""
    tokenized = [_words(d) for d in documents]
    df = Counter(w for words in tokenized for w in set(words))
    vocab = {w: i for i, w in enumerate(sorted(df))}
    idf = np.array([math.log((1 + len(documents)) / (1 + df[w])) + 1 for w in sorted(df)])

    def vec(text: str) -> np.ndarray:
        v = np.zeros(len(vocab))
        for w in _words(text):
            if w in vocab:
                v[vocab[w]] += 1
        v *= idf
        return v / max(np.linalg.norm(v), 1e-12)

    return np.stack([vec(q) for q in queries]) @ np.stack([vec(d) for d in documents]).T


def _bow_ridge_scores(
    captions: list[str],
    vectors: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    queries: list[str],
    lam: float = 10.0,
) -> np.ndarray:
    """A text encoder without word order: bag-of-words -> ridge regression to standardised vectors.

    Scores are inner products with the standardised held-out vectors, which rank like cosine
    to the stored vectors (the same argument as the aligned encoder's query mapping).
    """
    vocab = {w: i for i, w in enumerate(sorted({w for i in train for w in _words(captions[i])}))}

    def bow(text: str) -> np.ndarray:
        x = np.zeros(len(vocab))
        for w in _words(text):
            if w in vocab:
                x[vocab[w]] += 1
        return x

    x = np.stack([bow(captions[i]) for i in train])
    mean, std = vectors[train].mean(0), vectors[train].std(0) + 1e-6
    z = (vectors - mean) / std
    w = np.linalg.solve(x.T @ x + lam * np.eye(len(vocab)), x.T @ z[train])
    return np.stack([bow(q) for q in queries]) @ w @ z[test].T


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-category", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="data + tiny models (temp)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/research.md"))
    parser.add_argument("--align-epochs", type=int, default=ALIGN.epochs)
    parser.add_argument("--decoder-epochs", type=int, default=DECODE.epochs)
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    work = args.work or Path(tempfile.mkdtemp(prefix="featuregen-research-"))
    quiet = lambda _m: None  # noqa: E731

    started = time.perf_counter()
    scenes = generate_dataset(work / "data", CATEGORIES, args.per_category, args.seed)
    paths = [work / "data" / "images" / s.filename for s in scenes]
    ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    captions = [s.caption for s in scenes]
    specs = resolve_models("tiny", ensure_tiny_models(work / "home"))
    print(f"{len(scenes)} scenes in {time.perf_counter() - started:.1f}s")

    compute = ComputeSettings(device="cpu", num_workers=0)
    vectors, embedders = {}, {}
    for pooling in ("cls", "cls+mean"):
        embedder = ImageEmbedder(specs["dinov2"], compute, EmbeddingSettings(pooling=pooling))
        rows = list(embedder.embed_files(paths))
        assert all(v is not None for _, v, _ in rows), "an image failed to embed"
        vectors[pooling] = np.stack([v for _, v, _ in rows])
        embedders[pooling] = embedder

    held = held_out_mask(ids, ALIGN.held_out_fraction, ALIGN.split_salt)
    test = np.flatnonzero(held)
    lines: list[str] = []
    base = replace(ALIGN, epochs=args.align_epochs)
    runs = [
        ("cls", base),
        ("cls+mean", base),
        ("cls+mean", replace(base, standardize_targets=False)),
        ("cls+mean", replace(base, dropout=0.0)),
        ("cls+mean", replace(base, loss="siglip")),
        ("cls+mean", replace(base, recipe="talk2dino", lr=1e-3)),
    ]
    align_rows = []
    for pooling, config in runs:
        t = time.perf_counter()
        result = train_alignment(
            captions, ids, vectors[pooling], specs["clip_text"].name_or_path, config, log=quiet
        )
        m = result.metrics
        align_rows.append((pooling, config, m, time.perf_counter() - t))
        print(
            f"align {pooling:8s} {config.recipe}/{config.loss} std={config.standardize_targets}: "
            f"R@1/5/10 {m['recall@1']:.3f}/{m['recall@5']:.3f}/{m['recall@10']:.3f} "
            f"(untrained R@5 {m['untrained_recall@5']:.3f}, chance {m['chance_recall@5']:.3f}) "
            f"median rank {m['median_rank']:.0f}/{m['held_out_images']} "
            f"in {time.perf_counter() - t:.1f}s"
        )

    # Caption-text ceiling: the query is matched against each held-out image's own caption.
    queries = sorted({captions[i] for i in test})
    positives = np.array([[captions[i] == q for i in test] for q in queries])
    bow = retrieval_metrics(_bow_scores(queries, [captions[i] for i in test]), positives)
    train = np.flatnonzero(~held)
    ridge = {
        p: retrieval_metrics(
            _bow_ridge_scores(captions, vectors[p].astype(np.float64), train, test, queries),
            positives,
        )
        for p in ("cls", "cls+mean")
    }
    for p, m in ridge.items():
        print(f"bag-of-words ridge {p}: R@5 {m['recall@5']:.3f}")

    decoder_rows = []
    for pooling in ("cls", "cls+mean"):
        t = time.perf_counter()
        config = replace(DECODE, epochs=args.decoder_epochs)
        result = train_decoder(
            vectors[pooling], paths, ids, config, encode=encoder_for(embedders[pooling]), log=quiet
        )
        m = result.metrics
        decoder_rows.append((pooling, m, time.perf_counter() - t))
        grid_path = args.out.parent / f"decoder_grid_{pooling.replace('+', '_')}.png"
        grid_path.parent.mkdir(parents=True, exist_ok=True)
        result.grid.save(grid_path)
        print(
            f"decoder {pooling:8s}: PSNR {m['psnr']:.2f} dB vs mean image "
            f"{m['mean_image_psnr']:.2f} (+{m['psnr_gain_db']:.2f}), SSIM {m['ssim']:.3f} vs "
            f"{m['mean_image_ssim']:.3f}, re-encoded cos {m['reencoded_cosine']:.3f}, top-1 "
            f"{m['reencoded_top1']:.3f} (chance {m['chance_top1']:.4f}, ceiling "
            f"{m['downsized_original_top1']:.3f}) in {time.perf_counter() - t:.1f}s"
        )
    total = time.perf_counter() - started

    n_test = len(test)
    lines += [
        "# Research figures: text -> DINOv2 alignment and feature decoding (tiny profile)",
        "",
        f"Machine: {platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores "
        f"({platform.processor() or platform.platform()}), torch {torch.__version__}, CPU only; "
        "other jobs shared the machine, so times are indicative.",
        f"Data: `synthetic.generate_dataset` seed {args.seed}, {len(CATEGORIES)} categories x "
        f"{args.per_category} = {len(scenes)} images, {len(set(captions))} distinct captions; "
        f"held out by sha256(image_id) < 0.2: {n_test} images "
        f"({len(scenes) - n_test} train). Models: tiny profile (random-weight DINOv2, hidden 64, "
        "4 layers; CLIP text tower hidden 64, 2 layers, word-level tokenizer). "
        f"Whole run (data, embedding, 6 alignments, 2 decoders): {total:.0f}s. "
        "`python benchmarks/research.py`",
        "",
        "## Text -> image retrieval among the held-out images",
        "",
        "Queries: each held-out image's caption; a hit is its image (or any held-out image with "
        "the same caption). Scores are computed exactly as search does it: the encoder's query "
        "vector against the STORED unit DINOv2 vectors by cosine.",
        "",
        "| vectors | recipe / loss | standardised | dropout | R@1 | R@5 | R@10 | median rank | "
        "untrained R@5 | chance R@5 | R@5 / chance | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pooling, config, m, seconds in align_rows:
        lines.append(
            f"| {pooling} | {config.recipe} / {config.loss} | {config.standardize_targets} | "
            f"{config.dropout} | "
            f"{_fmt(m['recall@1'])} | {_fmt(m['recall@5'])} | {_fmt(m['recall@10'])} | "
            f"{m['median_rank']:.0f} (chance {m['chance_median_rank']:.0f}) | "
            f"{_fmt(m['untrained_recall@5'])} | {_fmt(m['chance_recall@5'])} | "
            f"{m['recall@5'] / m['chance_recall@5']:.1f}x | {seconds:.0f} |"
        )
    for p, m in ridge.items():
        lines.append(
            f"| {p} | bag-of-words ridge (no transformer) | True | - | {_fmt(m['recall@1'])} | "
            f"{_fmt(m['recall@5'])} | {_fmt(m['recall@10'])} | {m['median_rank']:.0f} | - | "
            f"{_fmt(m['chance_recall@5'])} | {m['recall@5'] / m['chance_recall@5']:.1f}x | 0 |"
        )
    lines += [
        f"| caption text (BoW TF-IDF, ceiling) | - | - | - | {_fmt(bow['recall@1'])} | "
        f"{_fmt(bow['recall@5'])} | {_fmt(bow['recall@10'])} | {bow['median_rank']:.0f} | - | "
        f"{_fmt(bow['chance_recall@5'])} | {bow['recall@5'] / bow['chance_recall@5']:.1f}x | 0 |",
        "",
        f"Training: {args.align_epochs} epochs, "
        f"batch {ALIGN.batch_size}, AdamW lr {ALIGN.lr} (weight decay {ALIGN.weight_decay}), "
        f"text-tower dropout {ALIGN.dropout}, 5% warm-up + cosine, seed {ALIGN.seed}; "
        "InfoNCE with learnable temperature (init 1/0.07); talk2dino at lr 1e-3. In tuning, "
        "200 epochs overfit (CLS+mean R@5 0.71 vs 0.80 at 100, without dropout).",
        "The bag-of-words ridge rows map word counts linearly into the standardised DINOv2 "
        "space (closed form, lambda 10): a text encoder that cannot bind a colour to its shape "
        "or position - the gap to the trained tower is what word order and composition buy. "
        "The caption-text row matches the query against the held-out images' own captions with "
        "TF-IDF bag of words. Because the queries here ARE those captions it is a ceiling, not a "
        "competitor: it needs a truthful caption for every indexed image, which the aligned "
        "encoder does not (it searches the image vectors alone). It misses only where captions "
        "repeat or differ by word order (bag of words ignores 'red circle and blue square' vs "
        "'blue circle and red square'). talk2dino with the tiny profile freezes a RANDOM text "
        "tower, so it shows what the frozen-tower recipe gets without pretraining; with the real "
        "clip-vit-base-patch32 tower it is the recipe of choice for little data.",
        "",
        "Search-space design (from a tuning run on the same data, CLS+mean, no dropout): "
        "training against standardised targets that are re-normalised per image scored R@5 "
        "0.809 in its own (standardised, re-normalised) space but 0.635 when its queries "
        "searched the stored unit vectors, because the per-image norm cannot be folded into a "
        "query. The shipped design trains with the inner product against the un-normalised "
        "standardised vector, which ranks exactly like cosine between normalize(t / std) and "
        "the stored vector: the figures above are what search over pgvector returns.",
        "",
        "## Vector -> image decoder (held-out images)",
        "",
        f"Decoder: {DECODE.image_size}px, linear -> 4x4 map -> sub-pixel conv upsampling "
        f"(widths {DECODE.max_channels}..{DECODE.base_channels}), {args.decoder_epochs} epochs, "
        f"batch {DECODE.batch_size}, lr {DECODE.lr}, MSE. Feature consistency: "
        "each reconstruction is re-encoded with the same tiny DINOv2 (same pooling); cosine to "
        "its source vector and top-1 retrieval of its source among the held-out vectors. The "
        "ceiling re-encodes the original downsized to the decoder's resolution.",
        "",
        "| vectors | PSNR dB | mean-image PSNR | gain dB | SSIM | mean-image SSIM | "
        "re-encoded cos | mean-image cos | top-1 | chance | top-1 / chance | ceiling top-1 | "
        "train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pooling, m, seconds in decoder_rows:
        lines.append(
            f"| {pooling} | {m['psnr']:.2f} | {m['mean_image_psnr']:.2f} | "
            f"+{m['psnr_gain_db']:.2f} | {_fmt(m['ssim'])} | {_fmt(m['mean_image_ssim'])} | "
            f"{_fmt(m['reencoded_cosine'])} | {_fmt(m['mean_image_cosine'])} | "
            f"{_fmt(m['reencoded_top1'])} | {m['chance_top1']:.4f} | "
            f"{m['reencoded_top1'] / m['chance_top1']:.0f}x | "
            f"{_fmt(m['downsized_original_top1'])} | {seconds:.0f} |"
        )
    lines += [
        "",
        "Grids (originals above, reconstructions below): `decoder_grid_cls.png`, "
        "`decoder_grid_cls_mean.png`.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} ({total:.0f}s)")


if __name__ == "__main__":
    main()
