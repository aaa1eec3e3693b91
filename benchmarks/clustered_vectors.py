"""`image_embeddings` rows for the benchmarks: their column types and key, and clustered unit
vectors to fill them with."""

from __future__ import annotations

import numpy as np

from featuregen_assets.core.store.table import Table

TYPES = ["text", "text", "vector"]  # image_id, model, embedding
KEY = ["image_id", "model"]


def unit_vectors(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Unit vectors around ``centres`` (image embeddings cluster by content)."""
    picked = centres[rng.integers(0, len(centres), n)]
    v = picked + 0.35 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def rows(prefix: str, vectors: np.ndarray, model: str) -> Table:
    """One row per vector, ids ``prefix-00000000`` on."""
    ids = [f"{prefix}-{i:08d}" for i in range(len(vectors))]
    return Table({"image_id": ids, "model": [model] * len(vectors), "embedding": vectors})
