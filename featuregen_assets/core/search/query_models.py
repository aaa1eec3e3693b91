"""The models that turn a query into vectors, loaded on first use and shared between threads:
the aligned text encoder (served or asked-for version), the sentence encoder of caption
search, the image embedder of uploads.

Given a directory for them, the two text encoders run as ONNX Runtime graphs
(`core.text.query_graph`: no torch import, the GIL released while encoding), reused until
their weights change: the text encoder's as `aligned_text_encoder` wrote it, the sentence
encoder's exported here on first load (and a text encoder's, where training wrote none). An
encoder whose export fails runs on torch, as every encoder does without the directory.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import psycopg

from featuregen_assets.core.search.errors import Unavailable
from featuregen_assets.core.store.registry import RegisteredModel, model_version, served_model
from featuregen_assets.core.store.table_writes import hnsw_index_name
from featuregen_assets.core.text.query_graph import (
    QueryGraph,
    load_graph,
    source_fingerprint,
    text_encoder_graph,
)

TEXT_ENCODER = "aligned_text_encoder"
LOADED_VERSIONS = 3  # text encoder versions kept loaded (a `version=` query loads its own)
SENTENCE_GRAPH = "sentence-"  # + the sentence encoder's source fingerprint, in `graphs_dir`
log = logging.getLogger(__name__)


class QueryModels:
    """Query encoders. ``sentence_encoder`` names the sentence encoder of caption search (a
    `core.text.sentences` setting; None: no caption search); ``int8`` runs the text encoders'
    matrix products with int8 weights; ``graphs_dir`` keeps the sentence encoder's query graph
    (None: the text encoders run on torch; see the module); ``threads``: the intra-op threads
    of one encoding (None: the runtime's default)."""

    def __init__(
        self,
        embedder_factory: Callable[[], object] | None = None,
        int8: bool = False,
        sentence_encoder: str | None = None,
        graphs_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        self._embedder_factory = embedder_factory
        self._int8 = int8
        self._sentence_name = sentence_encoder
        self._graphs_dir = graphs_dir
        self._threads = threads
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
                self._encoders[key] = self._load_text_encoder(record.path)
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
                try:
                    self._sentence = self._load_sentence_encoder(self._sentence_name)
                except (OSError, ValueError, ImportError) as error:
                    self._sentence_error = f"{type(error).__name__}: {error}"
            return self._sentence

    def _load_text_encoder(self, directory: Path):
        """The aligned text encoder saved in ``directory``: its graph (exported as it was
        trained, or here on first load), else the torch model."""
        if self._graphs_dir is None:
            return self._on_torch(_load_encoder(directory))
        graph_dir, source = text_encoder_graph(directory)
        if graph := load_graph(graph_dir, source, self._int8, self._threads):
            return graph
        from featuregen_assets.core.text.graph_export import export_text_encoder_graph

        encoder = _load_encoder(directory)
        return self._exported(
            encoder, lambda: export_text_encoder_graph(encoder, graph_dir, source)
        )

    def _load_sentence_encoder(self, name: str):
        """The sentence encoder ``name``: its graph (kept in `graphs_dir`, exported on first
        load) when its model is a local directory, else the torch model."""
        from featuregen_assets.core.text.sentences import SentenceModel, resolve

        load = Path(resolve(name)[0])
        if self._graphs_dir is None or not load.is_dir():
            return self._on_torch(SentenceModel(name, batch_size=1))
        source = source_fingerprint(path for path in load.rglob("*") if path.is_file())
        graph_dir = self._graphs_dir / f"{SENTENCE_GRAPH}{source}"
        if graph := load_graph(graph_dir, source, self._int8, self._threads):
            return graph
        from featuregen_assets.core.text.graph_export import export_sentence_graph

        model = SentenceModel(name, batch_size=1)

        def export() -> Path | None:
            for stale in self._graphs_dir.glob(f"{SENTENCE_GRAPH}*"):  # other weights' graphs
                shutil.rmtree(stale, ignore_errors=True)
            return export_sentence_graph(model, graph_dir, source)

        return self._exported(model, export)

    def _exported(self, model, export: Callable[[], Path | None]):
        """The graph ``export()`` writes, or ``model`` on torch when it writes none or fails
        (the same vectors, slower: the failure is logged)."""
        try:
            directory = export()
        except Exception as error:  # noqa: BLE001 - any export failure leaves torch answering
            log.warning("query encoder stays on torch: its ONNX export failed: %s", error)
            directory = None
        if directory is None:
            return self._on_torch(model)
        return QueryGraph(directory, self._int8, self._threads)

    def _on_torch(self, model):
        """``model`` (a text encoder or a `SentenceModel`) as it runs on torch: its linear
        layers in int8 when asked."""
        self._torch_threads()
        if not self._int8:
            return model
        if hasattr(model, "model"):  # a SentenceModel: quantize the network inside
            model.model = _int8(model.model)
            return model
        return _int8(model)

    def image_embedder(self):
        """The image embedder, built on first use."""
        if self._embedder_factory is None:
            raise Unavailable("image queries need the DINOv2 embedder, which is not configured")
        with self._lock:
            if self._embedder is None:
                self._torch_threads()
                self._embedder = self._embedder_factory()
            return self._embedder

    def warm(self, conn: psycopg.Connection) -> None:
        """Load the served text encoder and the sentence encoder now, where there are any."""
        record = served_model(conn, TEXT_ENCODER)
        if record is not None:
            self.text_encoder(record)
        self._load_sentence()

    def _torch_threads(self) -> None:
        """Give torch `threads` intra-op threads (process-wide), when set."""
        if self._threads is not None:
            import torch

            torch.set_num_threads(self._threads)


def _int8(model):
    from featuregen_assets.core.search.quantize import with_int8_linear_layers

    return with_int8_linear_layers(model)


def _load_encoder(directory: Path):
    from featuregen_assets.core.training.alignment import AlignedTextEncoder

    return AlignedTextEncoder.load(directory)
