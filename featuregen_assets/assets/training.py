"""Shared wiring of the two training assets: config, versions, registry, metadata."""

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from featuregen_assets.assets.config import set_fields
from featuregen_assets.core import paths
from featuregen_assets.core.plots import line_chart, markdown_image
from featuregen_assets.core.registry import RegisteredModel, most_embedded_model, register_model
from featuregen_assets.resources.postgres import PostgresResource


class TrainingConfig(dg.Config):
    """Settings both trainings take; unset fields take the core config's defaults."""

    embedding_model: str | None = Field(
        default=None, description="Stored vectors to train against; default: the most stored."
    )
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None
    held_out_fraction: float | None = None
    max_steps: int | None = Field(default=None, description="Stop after this many steps.")

    def core_settings(self, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The fields given a value, for the core training config (minus `exclude`)."""
        return set_fields(self, exclude | {"embedding_model"})


def embedding_model_for(postgres: PostgresResource, requested: str | None) -> str:
    """The embedding model to train against: the requested one, else the most stored."""
    with postgres.connection() as conn:
        model = requested or most_embedded_model(conn)
    if model is None:
        raise dg.Failure("no image embeddings stored yet: materialise image_embeddings first")
    return model


def new_version(settings: dict[str, Any]) -> str:
    """`<UTC time>-<hash of the settings>`: sortable and tied to what was trained."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + digest.hexdigest()[:8]


def artifact_dir(name: str, version: str) -> Path:
    """Where a trained model version is saved."""
    return paths.artifacts_dir() / name / version


def register(postgres: PostgresResource, model: RegisteredModel) -> None:
    """Record the trained model in the `models` table."""
    with postgres.connection() as conn:
        register_model(conn, model)


def training_metadata(
    model: RegisteredModel, loss_curve: list[float], headline: dict[str, float]
) -> dict[str, Any]:
    """Output metadata: headline metrics as numbers, all metrics as JSON, the loss curve."""
    return {
        **{key: float(value) for key, value in headline.items()},
        "version": model.version,
        "path": dg.MetadataValue.path(str(model.path)),
        "embedding_model": model.embedding_model,
        "metrics": dg.MetadataValue.json(json.loads(json.dumps(model.metrics, default=str))),
        "loss_per_epoch": dg.MetadataValue.json([round(v, 5) for v in loss_curve]),
        "loss_curve": dg.MetadataValue.md(
            markdown_image(line_chart(loss_curve, f"{model.name} training loss"), "loss curve")
        ),
        "final_loss": float(loss_curve[-1]) if loss_curve else float("nan"),
    }
