"""What one search call reads (`Plan`: its lists, their query encoders and vectors) and how
long each part took (`Timings`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from featuregen_assets.core.store.registry import RegisteredModel


@dataclass
class Timings:
    """Milliseconds per part of a search call (parts run on two threads may overlap)."""

    ms: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("encode", "vector", "keyword", "metadata"), 0.0)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)  # a side thread adds too

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            with self.lock:
                self.ms[name] += (time.perf_counter() - start) * 1000


@dataclass
class Plan:
    """What a query reads: its lists, and each vector list's query vector and model."""

    kind: str
    lists: tuple[str, ...]
    image_vector: np.ndarray | None = None
    space: str | None = None  # the image vectors' embedding model
    caption_vector: np.ndarray | None = None
    sentence_model: str | None = None
    record: RegisteredModel | None = None  # the text encoder a text query used
    random_prompts: bool = False  # caption search reads the random captioner's prompts too
    text_encoder: object | None = None  # encodes the image list's query vector (`encode`)
    sentence: object | None = None  # encodes the caption list's query vector (`encode`)
    weights: dict[str, float] = field(default_factory=dict)  # hybrid's, per list
    keyword_pages: object | None = None  # a filtered first page's `lists.KeywordPages`
    facets: dict[str, int] | None = None  # kept from the same query unfiltered (`Searcher`)
    facets_key: str | None = None  # a first page's identity without its category

    def encode_image_query(self, text: str, timings: Timings) -> None:
        """The image list's query vector, if the plan reads that list and lacks it."""
        if self.text_encoder is not None and self.image_vector is None:
            with timings.measure("encode"):
                self.image_vector = self.text_encoder.encode([text])[0]

    def encode_caption_query(self, text: str, timings: Timings) -> None:
        """The caption list's query vector, if the plan reads that list and lacks it."""
        if self.sentence is not None and self.caption_vector is None:
            with timings.measure("encode"):
                self.caption_vector = self.sentence.encode([text])[0]
