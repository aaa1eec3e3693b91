"""A query encoder as an ONNX graph, run by ONNX Runtime: text → query vector without torch.

Encoding one short query with torch pays torch's import (seconds, in a CLI call) and Python
between its ops, under the GIL (a server's threads queue on it). ONNX Runtime runs the whole
graph in C++ with the GIL released, so a server's search threads encode in parallel on every
core. `graph_export` writes a graph directory from the torch encoder; this module only reads
one, importing onnxruntime and tokenizers (no torch, no transformers).

A graph directory holds `model.onnx` (float32), `model.int8.onnx` (the same graph with int8
weights for its matrix products: ONNX Runtime's dynamic quantization, per channel, written on
the first int8 load), `tokenizer.json` (the encoder's fast tokenizer) and `graph.json`: the
format, the encoder's model key (sentence encoders), the vector's size, the longest token
sequence, the padding id and `source`, a fingerprint of the weights it was exported from
(`source_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

GRAPH_FORMAT = "featuregen-query-graph/1"
GRAPH_FILE = "graph.json"
TEXT_ENCODER_GRAPH = "query-graph"  # in a saved aligned text encoder's directory


def source_fingerprint(files: Iterable[Path]) -> str:
    """A fingerprint of a model's ``files`` (paths, sizes, modification times): a graph
    exported from other weights does not match it."""
    digest = hashlib.sha256()
    for path in sorted(Path(path).resolve() for path in files):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def text_encoder_graph(directory: Path) -> tuple[Path, str]:
    """Where the graph of the aligned text encoder saved in ``directory`` lives, and the
    fingerprint of the weights it must come from."""
    weights = [directory / "model.safetensors", directory / "config.json"]
    return directory / TEXT_ENCODER_GRAPH, source_fingerprint(weights)


def graph_meta(directory: Path) -> dict | None:
    """``graph.json`` of a graph directory, or None when it has none (or not this format)."""
    try:
        meta = json.loads((directory / GRAPH_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == GRAPH_FORMAT else None


class QueryGraph:
    """Texts → float32 query vectors from a graph directory (see the module): the same
    vectors as the torch encoder it was exported from, to float rounding (int8: to the
    quantization's). ``threads``: ONNX Runtime's intra-op threads per call (None: its
    default, every core). Safe to share between threads."""

    def __init__(self, directory: Path, int8: bool = False, threads: int | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        meta = graph_meta(directory)
        if meta is None:
            raise ValueError(f"{directory} holds no query graph ({GRAPH_FORMAT})")
        self.key: str | None = meta.get("key")
        self.dim = int(meta["dim"])
        self._pad_id = int(meta["pad_id"])
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.no_padding()  # `encode` pads a batch to its longest text itself
        self._tokenizer.enable_truncation(int(meta["max_length"]))
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        model = _int8_graph(directory) if int8 else directory / "model.onnx"
        self._session = onnxruntime.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One query vector per text, (len(texts), dim) float32."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        width = max(len(encoding.ids) for encoding in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        (vectors,) = self._session.run(["vector"], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(vectors, dtype=np.float32)


def _int8_graph(directory: Path) -> Path:
    """``model.int8.onnx`` of a graph directory, quantized from ``model.onnx`` if absent."""
    target = directory / "model.int8.onnx"
    if not target.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        staging = directory / f".model.int8.{os.getpid()}.{threading.get_ident()}.onnx"
        try:
            with _root_logging_kept():
                quantize_dynamic(
                    directory / "model.onnx", staging, weight_type=QuantType.QInt8, per_channel=True
                )
            os.replace(staging, target)  # readers see the whole file or none
        finally:
            staging.unlink(missing_ok=True)
    return target


@contextmanager
def _root_logging_kept() -> Iterator[None]:
    """ONNX Runtime's quantizer logs through `logging.warning` and the like, which give the
    root logger a stderr handler when it has none (and it advises a pre-processing that these
    graphs do not need): warnings and below are off while it runs, the root's handlers and
    level restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        root.handlers[:] = handlers
        root.setLevel(level)


def load_graph(
    directory: Path, source: str, int8: bool = False, threads: int | None = None
) -> QueryGraph | None:
    """The graph in ``directory`` if it was exported from weights fingerprinted ``source``,
    else None (none there, or stale)."""
    meta = graph_meta(directory)
    if meta is None or meta.get("source") != source:
        return None
    return QueryGraph(directory, int8, threads)
