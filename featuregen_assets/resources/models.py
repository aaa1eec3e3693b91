"""GPU-step resources: compute settings and the two feature models, loaded once per step."""

import os
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from featuregen_assets.core.runtime import paths
from featuregen_assets.core.runtime.processes import die_with_parent
from featuregen_assets.core.vision.compute import ComputeSettings
from featuregen_assets.core.vision.hub import ensure_available
from featuregen_assets.core.vision.model_profiles import (
    DEFAULT_DINOV2,
    ModelSpec,
    profile_from_env,
    resolve_model,
)

GPU_POOL = "gpu"  # the Dagster pool of every step that runs a model: one at a time by default


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _env_workers() -> int | None:
    value = os.environ.get("FEATUREGEN_NUM_WORKERS")
    return int(value) if value else None


class ComputeResource(dg.ConfigurableResource):
    """Where and how model steps run; unset fields come from FEATUREGEN_* at run time."""

    device: str | None = Field(
        default=None, description="auto | cpu | cuda | cuda:N (FEATUREGEN_DEVICE, auto)"
    )
    dtype: str | None = Field(
        default=None, description="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16"
    )
    batch_size: int | None = Field(
        default=None, description="Images per forward pass (FEATUREGEN_BATCH_SIZE, 32)."
    )
    num_workers: int | None = Field(
        default=None,
        description="Data-loader worker processes (FEATUREGEN_NUM_WORKERS; default all CPUs"
        " but two on a GPU, 2 on the CPU).",
    )
    attn_implementation: str = Field(default="sdpa", description="sdpa | eager | flash_attention_2")
    compile: bool = Field(default=False, description="torch.compile the model.")
    gpu_jpeg_share: float | None = Field(
        default=None,
        description="Share of JPEGs nvJPEG decodes on a GPU; loader workers decode the rest"
        " (FEATUREGEN_GPU_JPEG_SHARE, 0.75).",
    )
    checkpoint_every_s: float | None = Field(
        default=None,
        description="Seconds between checkpoints of a model step's finished rows, which a rerun"
        " after a failure resumes from (FEATUREGEN_CHECKPOINT_EVERY_S, 30).",
    )

    def checkpoint_interval_s(self) -> float:
        """`checkpoint_every_s`, or FEATUREGEN_CHECKPOINT_EVERY_S, or 30."""
        if self.checkpoint_every_s is not None:
            return self.checkpoint_every_s
        return float(_env("FEATUREGEN_CHECKPOINT_EVERY_S", "30"))

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A model step (every one has this resource) dies with its run worker."""
        die_with_parent()

    def settings(self) -> ComputeSettings:
        """The plain-Python compute settings."""
        return ComputeSettings(
            device=self.device or _env("FEATUREGEN_DEVICE", "auto"),
            dtype=self.dtype or _env("FEATUREGEN_DTYPE", "auto"),
            batch_size=self.batch_size or int(_env("FEATUREGEN_BATCH_SIZE", "32")),
            num_workers=(self.num_workers if self.num_workers is not None else _env_workers()),
            attn_implementation=self.attn_implementation,
            compile=self.compile,
            gpu_jpeg_share=(
                self.gpu_jpeg_share
                if self.gpu_jpeg_share is not None
                else float(_env("FEATUREGEN_GPU_JPEG_SHARE", str(ComputeSettings.gpu_jpeg_share)))
            ),
        )


class ModelsResource(dg.ConfigurableResource):
    """Which models make the features: profile `real` (hub ids) or `tiny` (built locally)."""

    profile: str | None = Field(
        default=None, description="real | tiny (FEATUREGEN_MODELS, default real)"
    )
    dinov2: str | None = Field(
        default=None,
        description=f"DINOv2 of the real profile (FEATUREGEN_DINOV2, {DEFAULT_DINOV2})",
    )

    def spec(self, role: str) -> ModelSpec:
        """The model of `role` (dinov2, qwen2vl, clip_text) in this profile; a hub model must
        be cached or reachable (`ensure_available`)."""
        profile = self.profile or profile_from_env()
        dinov2 = self.dinov2 or _env("FEATUREGEN_DINOV2", DEFAULT_DINOV2)
        spec = resolve_model(profile, role, paths.models_dir(), dinov2)
        if profile == "real":
            ensure_available(spec.name_or_path)
        return spec


class EmbedderResource(dg.ConfigurableResource):
    """The DINOv2 image embedder, loaded in `setup_for_execution` and freed after the step."""

    models: ModelsResource
    compute: ComputeResource
    pooling: str | None = Field(
        default=None, description="cls | cls+mean: CLS ⊕ mean of patches (FEATUREGEN_POOLING, cls)"
    )

    _embedder = PrivateAttr(default=None)

    def build(self):
        """A new `ImageEmbedder` with this resource's settings."""
        from featuregen_assets.core.vision.embedding import EmbeddingSettings, ImageEmbedder

        return ImageEmbedder(
            self.models.spec("dinov2"),
            self.compute.settings(),
            EmbeddingSettings(pooling=self.pooling or _env("FEATUREGEN_POOLING", "cls")),
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._embedder = self.build()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None

    @property
    def embedder(self):
        """The loaded `ImageEmbedder`."""
        return self._embedder


class CaptionerResource(dg.ConfigurableResource):
    """The Qwen2-VL captioner, loaded in `setup_for_execution` and freed after the step."""

    models: ModelsResource
    compute: ComputeResource
    max_new_tokens: int = Field(default=48, description="Longest caption, in tokens.")
    instruction: str | None = Field(default=None, description="Prompt given with each image.")

    _captioner = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from featuregen_assets.core.vision.captioning import Captioner, CaptionSettings

        overrides = {"instruction": self.instruction} if self.instruction else {}
        self._captioner = Captioner(
            self.models.spec("qwen2vl"),
            self.compute.settings(),
            CaptionSettings(max_new_tokens=self.max_new_tokens, **overrides),
        )

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._captioner is not None:
            self._captioner.close()
            self._captioner = None

    @property
    def captioner(self):
        """The loaded `Captioner`."""
        return self._captioner


def image_paths(rows: list[tuple[str, str]]) -> list[Path]:
    """The file paths of `(image_id, path)` rows."""
    return [Path(path) for _, path in rows]
