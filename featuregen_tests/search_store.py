"""A demo-like feature store for the search tests: synthetic scenes stored, embedded by the tiny
DINOv2, prompts and link captions, and a registered tiny aligned text encoder."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, CLIPTextModel

from featuregen_assets.core.ingest.image_store import ImageStore
from featuregen_assets.core.store import db, schema
from featuregen_assets.core.store.registry import RegisteredModel, register_model
from featuregen_assets.core.store.table import Table
from featuregen_assets.core.store.table_writes import TableName, ensure_hnsw_indexes
from featuregen_assets.core.text.sentences import BUNDLED, SentenceModel
from featuregen_assets.core.training.alignment import AlignedTextEncoder
from featuregen_assets.core.vision.embedding import ImageEmbedder
from featuregen_assets.core.vision.model_profiles import random_weights, resolve_model
from featuregen_assets.core.vision.settings import ComputeSettings, EmbeddingSettings
from featuregen_assets.demo.scenes import render_scene
from featuregen_assets.serve.app import ServeConfig

CATEGORIES = ("cafe", "bank", "shop")
PER_CATEGORY = 8


@dataclass
class SearchStore:
    """What the tests know about the stored data."""

    url: str
    home: Path
    ids: list[str]  # image ids in insertion order
    files: dict[str, bytes]  # image id → file bytes
    categories: dict[str, str]  # image id → category
    vectors: dict[str, np.ndarray]
    embedding_model: str
    models_dir: Path
    sentence_model: str = ""  # the key of the stored text vectors (all-MiniLM-L6-v2)

    @property
    def dim(self) -> int:
        """The stored vectors' dimension."""
        return len(next(iter(self.vectors.values())))

    def config(self, **overrides) -> ServeConfig:
        """A `ServeConfig` over this store, with the tiny embedder for image queries and the
        query encoders' ONNX graphs in the home, as `featuregen serve` has them; torch's
        threads left as they are (the tests share this process)."""
        return ServeConfig(
            database_url=self.url,
            images_dir=self.home / "images",
            thumbs_dir=self.home / "thumbs",
            embedder_factory=lambda: tiny_embedder(self.models_dir),
            **{
                "encoder_threads": None,
                "sentence_encoder": BUNDLED,
                "query_graphs_dir": self.home / "query-graphs",
                **overrides,
            },
        )


def tiny_embedder(models_dir: Path) -> ImageEmbedder:
    """The tiny DINOv2 on the CPU, in-process."""
    spec = resolve_model("tiny", "image_embedder", models_dir)
    return ImageEmbedder(spec, ComputeSettings(device="cpu", num_workers=0), EmbeddingSettings())


def save_text_encoder(home: Path, models_dir: Path, target_dim: int, seed: int, name: str) -> Path:
    """A tiny aligned text encoder with random weights (seeded) saved under home/artifacts."""
    import torch

    tower_dir = resolve_model("tiny", "text_tower", models_dir).name_or_path
    torch.manual_seed(seed)
    encoder = AlignedTextEncoder(
        CLIPTextModel.from_pretrained(tower_dir),
        AutoTokenizer.from_pretrained(tower_dir),
        target_dim,
    )
    return encoder.save(home / "artifacts" / name)


def register_text_encoder(store: SearchStore, version: str, seed: int) -> None:
    """Save and register a tiny text encoder as `aligned_text_encoder` version ``version``."""
    path = save_text_encoder(store.home, store.models_dir, store.dim, seed, f"encoder-{version}")
    url, model = store.url, store.embedding_model
    with db.connection(url) as conn:
        register_model(conn, RegisteredModel("aligned_text_encoder", version, path, model, {}, {}))


def search_store_in_new_database(
    admin_url: str, prefix: str, home: Path, models_dir: Path
) -> SearchStore:
    """`build_search_store` in a new, migrated database named `<prefix>_<random hex>`."""
    url = db.ensure_database(admin_url, f"{prefix}_{uuid.uuid4().hex[:12]}")
    with db.connection(url) as conn:
        schema.migrate(conn)
    return build_search_store(url, home, models_dir)


def build_search_store(url: str, home: Path, models_dir: Path) -> SearchStore:
    """24 scenes of three categories stored, embedded and captioned; encoder v1 registered."""
    store = ImageStore(home / "images")
    embedder = tiny_embedder(models_dir)
    rows, files, categories = [], {}, {}
    for category in CATEGORIES:
        for index in range(PER_CATEGORY):
            scene, data, _ = render_scene(category, index, seed=11)
            image_id, path = store.put(data, scene.format)
            files[image_id] = data
            categories[image_id] = category
            link = f"http://demo.test/{scene.filename}"
            rows.append((category, link, image_id, str(path), scene))
    ids = [row[2] for row in rows]
    embedded = {i: v for i, v, _ in embedder.embed_files([Path(r[3]) for r in rows])}
    vectors = {ids[i]: embedded[i] for i in range(len(ids))}
    with db.connection(url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO raw_images (category, url, status, image_id, path, width, height,"
                " format, caption) VALUES (%s, %s, 'ok', %s, %s, %s, %s, %s, %s)",
                [(c, u, i, p, s.width, s.height, s.format, s.caption) for c, u, i, p, s in rows],
            )
            cur.executemany(
                "INSERT INTO image_prompts (image_id, model, source, prompt)"
                " VALUES (%s, %s, %s, %s)",
                [
                    (i, model, source, text)
                    for _, _, i, _, s in rows
                    for model, source, text in (
                        ("tiny/qwen2vl@0", "generated", f"a picture of {s.objects[0].phrase}"),
                        ("link", "link_caption", s.caption),
                    )
                ],
            )
            cur.executemany(
                "INSERT INTO image_embeddings (image_id, model, embedding) VALUES (%s, %s, %s)",
                [(i, embedder.key, vectors[i]) for i in ids],
            )
        table = Table({"model": [embedder.key], "embedding": vectors[ids[0]][None]})
        ensure_hnsw_indexes(conn, TableName("public", "image_embeddings"), table, "model")
        sentence_model = store_text_vectors(conn)
    store = SearchStore(
        url, home, ids, files, categories, vectors, embedder.key, models_dir, sentence_model
    )
    register_text_encoder(store, "v1", seed=1)
    return store


def store_text_vectors(conn) -> str:
    """prompt_embeddings of every stored text with all-MiniLM-L6-v2 (the tiny captioner's
    marked random), as the asset stores them; returns the model's key."""
    texts = conn.execute(
        "SELECT image_id, model, source, prompt, encode(sha256(convert_to(prompt, 'UTF8')), 'hex')"
        " FROM image_prompts ORDER BY 1, 2, 3"
    ).fetchall()
    model = SentenceModel(BUNDLED)
    vectors = model.encode([text for _, _, _, text, _ in texts])
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO prompt_embeddings (image_id, model, prompt_model, source, text_sha,"
            " random_weights, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (image_id, model.key, prompt_model, source, sha, random_weights(prompt_model), v)
                for (image_id, prompt_model, source, _, sha), v in zip(texts, vectors, strict=True)
            ],
        )
    table = Table({"model": [model.key], "embedding": vectors[:1]})
    ensure_hnsw_indexes(conn, TableName("public", "prompt_embeddings"), table, "model")
    return model.key
