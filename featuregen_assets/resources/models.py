"""GPU-step resources: compute settings, model choice, and one resource per model role that
loads its model once per step.

Every field left unset takes the run's `Settings` (FEATUREGEN_* variables)."""

import dataclasses
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from featuregen_assets.core.runtime import paths
from featuregen_assets.core.runtime.processes import die_with_parent
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
    """Which model plays each role: the settings' profile and choices, this resource's fields
    over them; `core.vision.model_profiles.choose_model` decides."""

    settings: dg.ResourceDependency[Settings]
    profile: str | None = Field(default=None, description="real | tiny")
    chosen: dict[str, str] = Field(
        default_factory=dict,
        description="Role → hub id or directory, over the role's setting (image_embedder,"
        " captioner, text_tower, sentence_encoder).",
    )

    def spec(self, role: str) -> ModelSpec:
        """The model of `role`: `Settings.model` with this resource's fields set."""
        return self.settings.model(role, self.profile, self.chosen.get(role))


class LoadedModelResource(dg.ConfigurableResource):
    """A model a step uses, built by `load` in `setup_for_execution` and freed after the step."""

    _model = PrivateAttr(default=None)

    def load(self):
        """The model, loaded."""
        raise NotImplementedError

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._model = self.load()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        close = getattr(self._model, "close", None)
        if close is not None:
            close()
        self._model = None

    @property
    def model(self):
        """The loaded model."""
        return self._model


class ImageEmbedderResource(LoadedModelResource):
    """The image embedder (`ImageEmbedder`, a DINOv2)."""

    models: ModelsResource
    compute: ComputeResource
    pooling: str | None = Field(default=None, description="cls | cls+mean: CLS ⊕ mean of patches")

    def load(self):
        from featuregen_assets.core.vision.embedding import ImageEmbedder

        embedding = self.compute.settings.embedding
        return ImageEmbedder(
            self.models.spec("image_embedder"),
            self.compute.compute_settings(),
            dataclasses.replace(embedding, pooling=self.pooling or embedding.pooling),
        )


class CaptionerResource(LoadedModelResource):
    """The captioner (`Captioner`, a Qwen2-VL)."""

    models: ModelsResource
    compute: ComputeResource
    max_new_tokens: int = Field(default=48, description="Longest caption, in tokens.")
    instruction: str | None = Field(default=None, description="Prompt given with each image.")

    def load(self):
        from featuregen_assets.core.vision.captioning import Captioner, CaptionSettings

        overrides = {"instruction": self.instruction} if self.instruction else {}
        return Captioner(
            self.models.spec("captioner"),
            self.compute.compute_settings(),
            CaptionSettings(max_new_tokens=self.max_new_tokens, **overrides),
        )


class SentenceEncoderResource(LoadedModelResource):
    """The sentence encoder of image texts (`SentenceModel`)."""

    models: ModelsResource
    compute: ComputeResource

    def load(self):
        from featuregen_assets.core.text.sentences import SentenceModel
        from featuregen_assets.core.vision.compute import place

        settings = self.compute.compute_settings()
        device, _ = place(settings)
        spec = self.models.spec("sentence_encoder")
        return SentenceModel(spec.name_or_path, str(device), settings.batch_size)


def image_paths(rows: list[tuple[str, str]]) -> list[Path]:
    """The file paths of `(image_id, path)` rows."""
    return [Path(path) for _, path in rows]
