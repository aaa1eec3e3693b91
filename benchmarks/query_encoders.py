"""Query encoding: the torch encoders against their ONNX Runtime graphs (`core.text.query_graph`).

    python benchmarks/query_encoders.py [--queries 200] [--text-encoder DIR]

For all-MiniLM-L6-v2 (the sentence encoder of caption search) and an aligned text encoder of
the clip-vit-base-patch32 text tower architecture (random weights: `--text-encoder` names a
saved one, else one is built in a temporary directory), times one query at a time, each
query new (no cache helps), one intra-op thread as `featuregen serve` runs them: torch
float32 and int8 (dynamic quantization), the graph in float32 and int8. Then the encodings
per second of two threads encoding at once, ÷ one thread's, for each: torch holds the GIL
between its operations, ONNX Runtime releases it for the whole graph. Prints a markdown
table: ms per query (median), ÷ torch float32's, two threads' speed-up, cosine to torch
float32.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.vector_store import machine  # noqa: E402
from featuregen_assets.core.runtime.quiet import quiet_model_loading  # noqa: E402


def queries(count: int, offset: int = 0) -> list[str]:
    """Distinct short queries (no two alike)."""
    words = ("red", "small", "circle", "street", "shop", "night", "blue", "square", "cafe")
    return [
        f"a {words[i % 9]} {words[(i // 9) % 9]} near the {words[(i // 81) % 9]} {i + offset}"
        for i in range(count)
    ]


def per_query_ms(encode, texts: list[str]) -> float:
    """Median ms of encoding each text alone."""
    times = []
    for text in texts:
        start = time.perf_counter()
        encode([text])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def two_thread_speedup(encode, texts: list[str]) -> float:
    """Encodings per second with two threads at once ÷ with one."""
    start = time.perf_counter()
    for text in texts:
        encode([text])
    one = time.perf_counter() - start
    with ThreadPoolExecutor(2) as pool:
        start = time.perf_counter()
        list(pool.map(lambda text: encode([text]), texts))
        two = time.perf_counter() - start
    return one / two


def aligned_encoder(directory: Path | None, scratch: Path) -> Path:
    """A saved aligned text encoder: ``directory``, else a random one of CLIP-B/32's shape."""
    if directory is not None:
        return directory
    import torch
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    from featuregen_assets.core.training.alignment import AlignedTextEncoder
    from featuregen_assets.demo.tiny_models import ensure_tiny

    torch.manual_seed(0)
    tower = CLIPTextModel(CLIPTextConfig(max_position_embeddings=77)).eval()
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny("text_tower", scratch))
    return AlignedTextEncoder(tower, tokenizer, 768).save(scratch / "encoder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--text-encoder", type=Path, help="a saved aligned text encoder")
    args = parser.parse_args()
    quiet_model_loading()
    import torch

    from featuregen_assets.core.search.quantize import with_int8_linear_layers
    from featuregen_assets.core.text.graph_export import (
        export_sentence_graph,
        export_text_encoder_graph,
    )
    from featuregen_assets.core.text.query_graph import QueryGraph
    from featuregen_assets.core.text.sentences import BUNDLED, SentenceModel
    from featuregen_assets.core.training.alignment import AlignedTextEncoder

    torch.set_num_threads(1)
    texts = queries(args.queries)
    print(f"{args.queries} queries, one at a time, 1 intra-op thread; {machine()}\n")
    print("| encoder | runs on | ms / query | ÷ torch float32 | 2 threads ÷ 1 | cosine |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        sentence = SentenceModel(BUNDLED, batch_size=1)
        sentence_graph = export_sentence_graph(sentence, scratch / "sentence", "bench")
        text_dir = aligned_encoder(args.text_encoder, scratch)
        text = AlignedTextEncoder.load(text_dir)
        text_graph = export_text_encoder_graph(text, scratch / "text", "bench")
        for name, model, graph in (
            ("all-MiniLM-L6-v2", sentence, sentence_graph),
            ("aligned (CLIP-B/32 text tower)", text, text_graph),
        ):
            int8_torch = _int8_torch(model, with_int8_linear_layers)
            runs = {
                "torch float32": model.encode,
                "torch int8": int8_torch.encode,
                "graph float32": QueryGraph(graph, threads=1).encode,
                "graph int8": QueryGraph(graph, int8=True, threads=1).encode,
            }
            for encode in runs.values():  # warm each up on other queries
                encode(queries(5, offset=10**6))
            reference = model.encode(texts[:50])
            base = None
            for how, encode in runs.items():
                ms = per_query_ms(encode, texts)
                base = base or ms
                speedup = two_thread_speedup(encode, texts)
                cosine = float(np.mean((encode(texts[:50]) * reference).sum(axis=1)))
                print(
                    f"| {name} | {how} | {ms:.2f} | {ms / base:.2f} | {speedup:.2f} |"
                    f" {cosine:.4f} |"
                )


def _int8_torch(model, quantize):
    """``model`` (a SentenceModel or an aligned encoder) with int8 linear layers, a copy."""
    import copy

    if hasattr(model, "model"):
        twin = copy.copy(model)
        twin.model = quantize(model.model)
        return twin
    return quantize(model)


if __name__ == "__main__":
    main()
