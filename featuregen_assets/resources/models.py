"""GPU-step resources: compute settings and the two feature models, loaded once per step."""

from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from featuregen_assets.core import paths
from featuregen_assets.core.compute import ComputeSettings
from featuregen_assets.core.model_profiles import DEFAULT_DINOV2, ModelSpec, resolve_models


class ComputeResource(dg.ConfigurableResource):
    """Where and how model steps run."""

    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    dtype: str = Field(
        default="auto", description="auto (bf16 on GPU, fp32 on CPU) | float32 | ..."
    )
    batch_size: int = Field(default=32, description="Images per forward pass.")
    num_workers: int = Field(default=2, description="Data-loader worker processes.")
    attn_implementation: str = Field(default="sdpa", description="sdpa | eager | flash_attention_2")
    compile: bool = Field(default=False, description="torch.compile the model.")

    def settings(self) -> ComputeSettings:
        """The plain-Python compute settings."""
        return ComputeSettings(
            device=self.device,
            dtype=self.dtype,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            attn_implementation=self.attn_implementation,
            compile=self.compile,
        )


class ModelsResource(dg.ConfigurableResource):
    """Which models make the features: profile `real` (hub ids) or `tiny` (built locally)."""

    profile: str = Field(default="real", description="real | tiny (FEATUREGEN_MODELS)")
    dinov2: str = Field(default=DEFAULT_DINOV2, description="DINOv2 variant of the real profile.")

    def spec(self, role: str) -> ModelSpec:
        """The model of `role` (dinov2, qwen2vl, clip_text) in this profile."""
        return resolve_models(self.profile, paths.models_dir(), self.dinov2)[role]


class EmbedderResource(dg.ConfigurableResource):
    """The DINOv2 image embedder, loaded in `setup_for_execution` and freed after the step."""

    models: ModelsResource
    compute: ComputeResource
    pooling: str = Field(default="cls", description="cls | cls+mean (CLS ⊕ mean of patches)")

    _embedder = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from featuregen_assets.core.embedding import EmbeddingSettings, ImageEmbedder

        self._embedder = ImageEmbedder(
            self.models.spec("dinov2"),
            self.compute.settings(),
            EmbeddingSettings(pooling=self.pooling),
        )

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
        from featuregen_assets.core.captioning import Captioner, CaptionSettings

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
