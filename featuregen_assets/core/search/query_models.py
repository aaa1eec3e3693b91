"""The models that turn a query into vectors, loaded on first use and shared between threads:
the aligned text encoder (served or asked-for version), the sentence encoder of caption
search, the image embedder of uploads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import psycopg

from featuregen_assets.core.search.errors import Unavailable
from featuregen_assets.core.store.registry import RegisteredModel, model_version, served_model
from featuregen_assets.core.store.table_writes import hnsw_index_name

TEXT_ENCODER = "aligned_text_encoder"
LOADED_VERSIONS = 3  # text encoder versions kept loaded (a `version=` query loads its own)


class QueryModels:
    """Query encoders. ``sentence_encoder`` names the sentence encoder of caption search (a
    `core.text.sentences` setting; None: no caption search); ``int8`` runs the encoders'
    linear layers in int8."""

    def __init__(
        self,
        embedder_factory: Callable[[], object] | None = None,
        encoder_loader: Callable[[RegisteredModel], object] | None = None,
        int8: bool = False,
        sentence_encoder: str | None = None,
    ) -> None:
        self._embedder_factory = embedder_factory
        self._encoder_loader = encoder_loader or _load_encoder
        self._int8 = int8
        self._sentence_name = sentence_encoder
        self._encoders: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._sentence = None
        self._sentence_error: str | None = None
        self._embedder = None
        self._lock = threading.Lock()

    def text_encoder_record(
        self, conn: psycopg.Connection, version: str | None
    ) -> RegisteredModel | None:
        """The registered text encoder `version`, else the served one (None: none)."""
        if version is not None:
            return model_version(conn, TEXT_ENCODER, version)
        return served_model(conn, TEXT_ENCODER)

    def text_encoder(self, record: RegisteredModel):
        """The loaded encoder of ``record`` (the last `LOADED_VERSIONS` stay loaded)."""
        key = (record.version, str(record.path))
        with self._lock:
            if key not in self._encoders:
                encoder = self._encoder_loader(record)
                self._encoders[key] = _int8(encoder) if self._int8 else encoder
                while len(self._encoders) > LOADED_VERSIONS:
                    self._encoders.popitem(last=False)
            self._encoders.move_to_end(key)
            return self._encoders[key]

    def sentence(self, conn: psycopg.Connection):
        """The sentence encoder, when it loads and texts embedded by it are stored (its HNSW
        index exists); else None (`sentence_problem` says why)."""
        model = self._load_sentence()
        if model is None:
            return None
        name = hnsw_index_name("prompt_embeddings", "embedding", model.key, model.dim)
        (stored,) = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return model if stored else None

    def sentence_problem(self, conn: psycopg.Connection) -> str:
        """Why caption search cannot run."""
        if self._sentence_name is None:
            return "caption search is not configured (no sentence encoder)"
        model = self._load_sentence()
        if model is None:
            return (
                f"the sentence encoder {self._sentence_name!r} does not load:"
                f" {self._sentence_error}"
            )
        return (
            f"no image texts are embedded by {model.key} yet: run the prompt_embeddings step"
            " (`featuregen run`)"
        )

    def _load_sentence(self):
        if self._sentence_name is None:
            return None
        with self._lock:
            if self._sentence is None and self._sentence_error is None:
                from featuregen_assets.core.text.sentences import SentenceModel

                try:
                    model = SentenceModel(self._sentence_name, batch_size=1)
                except (OSError, ValueError, ImportError) as error:
                    self._sentence_error = f"{type(error).__name__}: {error}"
                    return None
                if self._int8:
                    model.model = _int8(model.model)
                self._sentence = model
            return self._sentence

    def image_embedder(self):
        """The image embedder, built on first use."""
        if self._embedder_factory is None:
            raise Unavailable("image queries need the DINOv2 embedder, which is not configured")
        with self._lock:
            if self._embedder is None:
                self._embedder = self._embedder_factory()
            return self._embedder

    def warm(self, conn: psycopg.Connection) -> None:
        """Load the served text encoder and the sentence encoder now, where there are any."""
        record = served_model(conn, TEXT_ENCODER)
        if record is not None:
            self.text_encoder(record)
        self._load_sentence()


def _int8(model):
    from featuregen_assets.core.search.quantize import with_int8_linear_layers

    return with_int8_linear_layers(model)


def _load_encoder(record: RegisteredModel):
    from featuregen_assets.core.training.alignment import AlignedTextEncoder

    return AlignedTextEncoder.load(record.path)
