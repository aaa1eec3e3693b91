"""Patch-token grids of stored images, kept as files beside the image store (not in pgvector).

The research report's decoder from patch tokens reads (rows, cols, dim) grids, which pgvector
does not hold (one vector a row) and `image_embeddings` does not keep (a dinov2-base grid is
256 × 768 values, 393 KB in float16, 100× the stored vector). The report computes them from
the stored image files for the images it decodes, with the same embedder, crop and model as
the stored vectors, and keeps each as `<directory>/<image id>.npy` (float16), so a rerun reads
them instead. An image's id is its content hash: a file there is never stale for its image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from featuregen_assets.core.training.dense_probe import PatchInputs


class PatchGridFiles:
    """One model's patch-token grids in `directory`, computed on first use."""

    def __init__(self, inputs: PatchInputs, directory: Path) -> None:
        self.inputs = inputs
        self.directory = Path(directory)

    def path(self, image_id: str) -> Path:
        """Where an image's grid is kept."""
        return self.directory / f"{image_id}.npy"

    def read(self, image_ids: Sequence[str], image_paths: Sequence[str]) -> np.ndarray:
        """(N, rows, cols, dim) float32 grids of the images, computing and keeping the ones
        not kept yet (64 at a time)."""
        missing = [r for r, i in enumerate(image_ids) if not self.path(i).is_file()]
        self.directory.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(missing), 64):
            rows = missing[start : start + 64]
            pixels = np.stack([self.inputs.transform.decode(image_paths[r]) for r in rows])
            for r, grid in zip(rows, self.inputs.tokens(pixels), strict=True):
                part = self.path(image_ids[r]).with_suffix(".part.npy")
                np.save(part, grid.astype(np.float16))
                part.replace(self.path(image_ids[r]))
        return np.stack([np.load(self.path(i)) for i in image_ids]).astype(np.float32)
