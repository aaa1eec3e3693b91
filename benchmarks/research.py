"""The research report at report scale, without the ingestion pipeline (CPU, offline, tiny models).

Draws the v2 scenes (default 256 per category: about 50 test images per category), embeds
them with the tiny DINOv2, stores rows the way the pipeline does (raw_images with link
captions, image_prompts, image_embeddings) in an embedded PostgreSQL, trains the text
encoder (the compositional `test_phrases` split) and the decoder with their defaults,
registers both, and runs the same comparison as the `research_report` asset, seeds averaged.

    python benchmarks/research.py [--per-category 256] [--seeds 3] [--variants LIST] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featuregen_assets.core.store import db, schema  # noqa: E402
from featuregen_assets.core.store.registry import RegisteredModel, register_model  # noqa: E402
from featuregen_assets.core.training.alignment import AlignmentConfig  # noqa: E402
from featuregen_assets.core.training.alignment_training import train_alignment  # noqa: E402
from featuregen_assets.core.training.decoder import DecoderConfig, encoder_for, train_decoder  # noqa: E402
from featuregen_assets.core.training.dense_probe import patch_inputs  # noqa: E402
from featuregen_assets.core.vision.embedding import ImageEmbedder  # noqa: E402
from featuregen_assets.core.vision.model_profiles import resolve_models  # noqa: E402
from featuregen_assets.core.vision.settings import ComputeSettings, EmbeddingSettings  # noqa: E402
from featuregen_assets.demo.run import write_queries  # noqa: E402
from featuregen_assets.demo.scenes import CATEGORIES, HELD_OUT_COMBINATIONS, generate_dataset  # noqa: E402
from featuregen_assets.demo.tiny_models import ensure_tiny_models  # noqa: E402
from featuregen_assets.research.comparison import run_comparison  # noqa: E402
from featuregen_assets.research.dense import ProbeData  # noqa: E402
from featuregen_assets.research.report import write_report  # noqa: E402
from featuregen_assets.research.variant_names import (  # noqa: E402
    DEFAULT_VARIANTS,
    VARIANTS,
    parse_variants,
)


def _store(conn, scenes, paths, ids, vectors, model_key: str) -> None:
    """Rows as the pipeline writes them: one raw_images row per link, its caption as a prompt."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO raw_images (category, url, status, image_id, path, caption)"
            " VALUES (%s, %s, 'ok', %s, %s, %s)",
            [
                (s.category, f"http://127.0.0.1/images/{s.filename}", i, str(p), s.caption)
                for s, p, i in zip(scenes, paths, ids, strict=True)
            ],
        )
        cur.executemany(
            "INSERT INTO image_prompts (image_id, model, source, prompt)"
            " VALUES (%s, 'link', 'link_caption', %s) ON CONFLICT DO NOTHING",
            [(i, s.caption) for s, i in zip(scenes, ids, strict=True)],
        )
        cur.executemany(
            "INSERT INTO image_embeddings (image_id, model, embedding) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            [(i, model_key, v) for i, v in zip(ids, vectors, strict=True)],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-category", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes")
    parser.add_argument("--seeds", type=int, default=3, help="text-encoder trainings to average")
    parser.add_argument("--work", type=Path, default=None, help="data, models, database (temp)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/research"))
    parser.add_argument("--epochs", type=int, default=None, help="text encoder (default: its own)")
    parser.add_argument("--decoder-epochs", type=int, default=None, help="(default: its own)")
    parser.add_argument(
        "--variants",
        type=parse_variants,
        default=DEFAULT_VARIANTS,
        help=f"learned variants, comma-separated (default {','.join(DEFAULT_VARIANTS)}; lit"
        f" only matters with fewer epochs than the encoder's): {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: a shared machine)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="featuregen-research-"))
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {message}", flush=True)

    scenes = generate_dataset(work / "site", CATEGORIES, args.per_category, args.seed)
    paths = [work / "site" / "images" / s.filename for s in scenes]
    ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    query_file = write_queries(scenes, work / "site", work / "queries.jsonl")
    log(f"{len(scenes)} scenes, {len(set(ids))} distinct images")

    specs = resolve_models("tiny", ensure_tiny_models(work / "home"))
    embedder = ImageEmbedder(
        specs["image_embedder"], ComputeSettings(device="cpu", num_workers=0), EmbeddingSettings()
    )
    rows = list(embedder.embed_files(paths))
    vectors = np.stack([v for _, v, _ in rows])
    log(f"embedded with {embedder.key}")

    url = db.ensure_database(db.embedded_server_url(work / "pg"), "research")
    with db.connection(url) as conn:
        schema.migrate(conn)
        _store(conn, scenes, paths, ids, vectors, embedder.key)

    tower = specs["text_tower"].name_or_path
    epochs = {"epochs": args.epochs} if args.epochs else {}
    align = AlignmentConfig(
        device="cpu", eval_every=0, test_phrases=HELD_OUT_COMBINATIONS, **epochs
    )
    texts = [s.caption for s in scenes]
    cpu = time.process_time()
    trained = train_alignment(texts, ids, vectors, tower, align, log=log)
    log(
        f"text encoder: test recall@5 {trained.metrics['recall@5']:.3f}"
        f" ({time.process_time() - cpu:.0f} CPU s)"
    )
    decoder_epochs = {"epochs": args.decoder_epochs} if args.decoder_epochs else {}
    decoder_config = DecoderConfig(device="cpu", **decoder_epochs)
    decoded = train_decoder(
        vectors, paths, ids, decoder_config, encode=encoder_for(embedder), log=log
    )
    artifacts = work / "artifacts"
    encoder_model = RegisteredModel(
        "aligned_text_encoder",
        "bench",
        artifacts / "encoder",
        embedder.key,
        {**asdict(align), "prompt_source": "link_caption"},
        {},
    )
    trained.encoder.save(encoder_model.path)
    (encoder_model.path / "split.json").write_text(json.dumps(trained.split.as_dict()))
    decoder_model = RegisteredModel(
        "decoder_model", "bench", artifacts / "decoder", embedder.key, asdict(decoder_config), {}
    )
    decoded.decoder.save(decoder_model.path)
    with db.connection(url) as conn:
        register_model(conn, encoder_model)
        register_model(conn, decoder_model)
        outcome = run_comparison(
            conn,
            encoder_model,
            decoder_model,
            tower,
            query_file,
            encoder_for(embedder),
            seeds=args.seeds,
            variants=args.variants,
            encode_pooled=encoder_for(embedder, "cls+mean"),
            probe=ProbeData(
                patch_inputs(embedder), work / "site" / "masks", work / "site" / "truth"
            ),
            log=log,
        )
    outcome.context.update(
        machine=f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores, torch"
        f" {torch.__version__}, CPU only",
        scenes=f"{len(CATEGORIES)} categories x {args.per_category}, seed {args.seed}",
        seconds=round(time.perf_counter() - started),
    )
    md, _ = write_report(
        args.out, outcome.measurements, outcome.context, outcome.answers, outcome.images
    )
    log(f"wrote {md}")
    print("\n".join(f"- {a}" for a in outcome.answers))


if __name__ == "__main__":
    main()
