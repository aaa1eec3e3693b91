"""Export a torch query encoder as a `query_graph` directory (ONNX, float32).

Two encoders have graphs: a sentence-transformers sentence encoder whose pipeline is a
transformer, mean or CLS pooling and (optionally) normalisation (others stay on torch), and
the aligned text encoder (tower, pooling, head, the stored space's scaling). Each graph takes
token ids and attention mask, a batch of any size and length, and gives unit vectors.

The directory is written beside its final place and renamed into it, so a reader never sees
half a graph; when two processes export the same weights at once, the first rename wins and
both use it (a graph of other weights is replaced).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from featuregen_assets.core.text.query_graph import (
    GRAPH_FILE,
    GRAPH_FORMAT,
    graph_meta,
    text_encoder_graph,
)

OPSET = 17
EXAMPLE_TEXT = "a photo of a street"


class _SentencePipeline(nn.Module):
    """Transformer → mean or CLS pooling → unit length (sentence-transformers' pipeline)."""

    def __init__(self, transformer: nn.Module, pooling: str) -> None:
        super().__init__()
        self.transformer = transformer
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


class _AlignedPipeline(nn.Module):
    """The aligned text encoder's query vectors, in the stored space (`encode`'s)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder.to_stored_space(self.encoder(input_ids, attention_mask))


def sentence_pooling(model) -> str | None:
    """The pooling of a SentenceTransformer that has a graph ("mean" or "cls"), else None."""
    names = [type(module).__name__ for module in model]
    if names[:2] != ["Transformer", "Pooling"] or names[2:] not in ([], ["Normalize"]):
        return None
    config = model[1].get_config_dict()
    mode = config.get("pooling_mode")
    if mode is None:  # sentence-transformers before 5 names its modes by flags
        flags = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token"}
        mode = next((name for name, flag in flags.items() if config.get(flag)), None)
    return mode if mode in ("mean", "cls") else None


def export_sentence_graph(sentence_model, directory: Path, source: str) -> Path | None:
    """``sentence_model``'s (`sentences.SentenceModel`) graph into ``directory``; None when
    its pipeline has none (see the module)."""
    model = sentence_model.model
    pooling = sentence_pooling(model)
    if pooling is None:
        return None
    meta = {
        "key": sentence_model.key,
        "dim": sentence_model.dim,
        "max_length": model.max_seq_length,
        "pad_id": model.tokenizer.pad_token_id or 0,
        "source": source,
    }
    pipeline = _SentencePipeline(model[0].auto_model, pooling)
    return _export(pipeline, model.tokenizer, directory, meta)


def export_text_encoder_graph(encoder, directory: Path, source: str) -> Path:
    """The aligned text encoder's (`alignment.AlignedTextEncoder`) graph into ``directory``."""
    meta = {
        "key": None,
        "dim": encoder.target_dim,
        "max_length": min(encoder.max_length, encoder.tower.config.max_position_embeddings),
        "pad_id": encoder.tokenizer.pad_token_id or 0,
        "source": source,
    }
    return _export(_AlignedPipeline(encoder), encoder.tokenizer, directory, meta)


def export_saved_text_encoder(encoder, directory: Path) -> Path:
    """The graph of ``encoder``, saved in ``directory``, where search looks for it
    (`query_graph.text_encoder_graph`): written as the encoder is trained, so the first
    query after its promotion does not wait for the export."""
    graph_dir, source = text_encoder_graph(directory)
    return export_text_encoder_graph(encoder, graph_dir, source)


def _export(module: nn.Module, tokenizer, directory: Path, meta: dict) -> Path:
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        example = tokenizer([EXAMPLE_TEXT, EXAMPLE_TEXT + " at night"], padding=True)
        device = next(module.parameters()).device  # a model trained on a GPU exports there
        inputs = tuple(
            torch.tensor(example[name], dtype=torch.int64, device=device)
            for name in ("input_ids", "attention_mask")
        )
        axes = {0: "texts", 1: "tokens"}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes on the transformers' Python branches
            torch.onnx.export(
                module.eval(),
                inputs,
                str(staging / "model.onnx"),
                input_names=["input_ids", "attention_mask"],
                output_names=["vector"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "vector": {0: "texts"}},
                opset_version=OPSET,
                dynamo=False,
            )
        tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        (staging / GRAPH_FILE).write_text(json.dumps({"format": GRAPH_FORMAT, **meta}, indent=2))
        existing = graph_meta(directory)
        if existing is None or existing.get("source") != meta["source"]:
            shutil.rmtree(directory, ignore_errors=True)  # a stale graph (other weights)
            with contextlib.suppress(OSError):  # else another process renamed its export first
                os.rename(staging, directory)
        # else another process exported the same weights first: its graph stays in use
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
