"""Query encoders as ONNX Runtime graphs: the torch encoders' vectors, exported once per
weights, torch kept answering when an export fails, and a text query answered without torch."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featuregen_assets.core.search import query_models
from featuregen_assets.core.search.query_models import QueryModels
from featuregen_assets.core.store import db
from featuregen_assets.core.store.registry import served_model
from featuregen_assets.core.text import graph_export
from featuregen_assets.core.text.query_graph import QueryGraph, graph_meta
from featuregen_assets.core.text.sentences import BUNDLED, SentenceModel
from featuregen_assets.core.training.alignment import AlignedTextEncoder
from featuregen_tests.search_store import SearchStore, search_store_in_new_database

TEXTS = ["a small green star", "a red circle at the top left", "shop " * 300, ""]


@pytest.fixture(scope="module")
def store(tmp_path_factory, pg_admin_url: str, tiny_models_dir) -> SearchStore:
    home = tmp_path_factory.mktemp("graph-home")
    return search_store_in_new_database(pg_admin_url, "graph", home, tiny_models_dir)


def _encoder_dir(store: SearchStore) -> Path:
    with db.connection(store.url) as conn:
        return Path(served_model(conn, query_models.TEXT_ENCODER).path)


def test_the_graphs_give_the_torch_encoders_vectors(store, tmp_path) -> None:
    models = QueryModels(sentence_encoder=BUNDLED, graphs_dir=tmp_path)
    with db.connection(store.url) as conn:
        record = served_model(conn, query_models.TEXT_ENCODER)
        sentence = models.sentence(conn)
    text_graph = models.text_encoder(record)
    assert isinstance(text_graph, QueryGraph) and isinstance(sentence, QueryGraph)
    torch_text = AlignedTextEncoder.load(record.path).encode(TEXTS)
    torch_sentence = SentenceModel(BUNDLED)
    assert sentence.key == torch_sentence.key == store.sentence_model
    np.testing.assert_allclose(text_graph.encode(TEXTS), torch_text, atol=1e-5)
    np.testing.assert_allclose(sentence.encode(TEXTS), torch_sentence.encode(TEXTS), atol=1e-5)
    assert text_graph.encode([]).shape == (0, text_graph.dim)

    int8 = QueryModels(sentence_encoder=BUNDLED, graphs_dir=tmp_path, int8=True, threads=1)
    with db.connection(store.url) as conn:
        int8_sentence = int8.sentence(conn)
    assert len(list(tmp_path.glob("sentence-*/model.int8.onnx"))) == 1
    cosines = (int8_sentence.encode(TEXTS[:2]) * torch_sentence.encode(TEXTS[:2])).sum(axis=1)
    assert cosines.min() > 0.97


def test_a_graph_is_exported_once_per_weights_and_torch_answers_if_export_fails(
    store, tmp_path, monkeypatch, caplog
) -> None:
    encoder_dir = tmp_path / "encoder"
    shutil.copytree(_encoder_dir(store), encoder_dir)
    graphs = tmp_path / "graphs"
    first = QueryModels(graphs_dir=graphs)._load_text_encoder(encoder_dir)
    assert isinstance(first, QueryGraph) and (encoder_dir / "query-graph/graph.json").is_file()

    def refuse(*_args, **_kwargs):
        raise RuntimeError("exporter refused")

    monkeypatch.setattr(graph_export, "export_text_encoder_graph", refuse)
    again = QueryModels(graphs_dir=graphs)._load_text_encoder(encoder_dir)
    assert isinstance(again, QueryGraph)  # the graph on disk, not a second export

    weights = encoder_dir / "model.safetensors"
    later = weights.stat().st_mtime_ns + 10**9
    os.utime(weights, ns=(later, later))  # other weights: the old graph no longer matches
    with caplog.at_level(logging.WARNING, logger=query_models.__name__):
        fallback = QueryModels(graphs_dir=graphs)._load_text_encoder(encoder_dir)
    assert isinstance(fallback, AlignedTextEncoder)
    assert "stays on torch: its ONNX export failed: exporter refused" in caplog.text
    np.testing.assert_allclose(fallback.encode(TEXTS), first.encode(TEXTS), atol=1e-5)

    monkeypatch.undo()
    renewed = QueryModels(graphs_dir=graphs)._load_text_encoder(encoder_dir)
    assert isinstance(renewed, QueryGraph)


def test_a_second_export_of_the_same_weights_keeps_the_first(store, tmp_path) -> None:
    encoder = AlignedTextEncoder.load(_encoder_dir(store))
    graph_dir = tmp_path / "graph"
    export = graph_export.export_text_encoder_graph
    first = export(encoder, graph_dir, "weights-a")
    inode = (first / "model.onnx").stat().st_ino
    export(encoder, graph_dir, "weights-a")  # another process, the same weights: kept
    assert (graph_dir / "model.onnx").stat().st_ino == inode
    export(encoder, graph_dir, "weights-b")  # other weights: replaced
    assert graph_meta(graph_dir)["source"] == "weights-b"
    assert QueryGraph(graph_dir).encode(TEXTS).shape == (len(TEXTS), encoder.target_dim)
    assert [path.name for path in tmp_path.iterdir()] == ["graph"]  # no staging left


def test_a_text_query_is_answered_without_importing_torch(store) -> None:
    """In a fresh process: float32 and int8 (quantized there) graphs, no torch, and the int8
    quantizer leaves the process's logging as it was (no root handler, nothing printed)."""
    graphs = store.home / "query-graphs"
    with db.connection(store.url) as conn:  # export both graphs here (torch is loaded here)
        models = QueryModels(sentence_encoder=BUNDLED, graphs_dir=graphs)
        models.warm(conn)
    script = f"""
import sys
from pathlib import Path
from featuregen_assets.core.search.engine import SearchQuery, Searcher
from featuregen_assets.core.store import db
for int8 in (False, True):
    searcher = Searcher(
        sentence_encoder={BUNDLED!r}, query_graphs_dir=Path({str(graphs)!r}), int8_text_encoder=int8
    )
    with db.connection({store.url!r}) as conn:
        for mode in ("image", "caption", "hybrid"):
            answer = searcher.search(conn, SearchQuery(text="a red circle", mode=mode, k=3))
            assert len(answer.hits) == 3, mode
import logging
assert not logging.getLogger().handlers, logging.getLogger().handlers
print(sorted(name for name in ("torch", "transformers", "sentence_transformers")
             if name in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert done.stderr == ""
