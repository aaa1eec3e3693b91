"""Settings of the model steps as plain dataclasses (no torch import: cheap to build)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComputeSettings:
    """How a model step runs.

    device: ``auto`` (the first GPU if there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    dtype: ``auto`` (bfloat16 on a GPU that supports it, float32 otherwise) or an explicit
    ``float32`` | ``bfloat16`` | ``float16``.
    num_workers: data-loader processes; None picks `loader_workers`' default.
    torch_threads: torch's intra-op threads on the CPU; None picks `cpu_threads`' default.
    gpu_jpeg_share: on a GPU with nvJPEG, the share of JPEGs it decodes (0–1); loader
    workers decode the rest, so the two decoders work at the same time.
    """

    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 32
    num_workers: int | None = None
    torch_threads: int | None = None
    attn_implementation: str = "sdpa"
    compile: bool = False
    gpu_jpeg_share: float = 0.75


@dataclass(frozen=True)
class EmbeddingSettings:
    """``pooling``: ``cls`` or ``cls+mean`` (CLS concatenated with the mean of patch tokens)."""

    pooling: str = "cls"
    normalize: bool = True
