"""Shared wiring of the models group: its asset decorator; for the two training assets,
config, versions, registry, metadata."""

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import dagster as dg
import psycopg
from pydantic import Field

from featuregen_assets.assets.config import set_fields
from featuregen_assets.core.runtime import paths
from featuregen_assets.core.store.registry import (
    RegisteredModel,
    most_embedded_model,
    promote,
    promotion_decision,
    register_model,
    served_model,
)
from featuregen_assets.core.training.plots import line_chart, markdown_image
from featuregen_assets.resources.models import GPU_POOL
from featuregen_assets.resources.postgres import PostgresResource


def model_asset(*deps: dg.AssetsDefinition) -> Callable[..., dg.AssetsDefinition]:
    """The decorator of a models-group asset: unpartitioned, reading what `deps` stored
    through Postgres, in the GPU pool."""
    return dg.asset(deps=list(deps), group_name="models", kinds={"pytorch"}, pool=GPU_POOL)


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
    torch_threads: int | None = Field(
        default=None,
        description="torch's intra-op threads while training (None: torch's default). On a"
        " shared 2-vCPU host at load ~15, a tiny decoder's epoch took 4.3 s with 2 threads"
        " and 0.44 s with 1 (benchmarks/RESULTS.md).",
    )

    def core_settings(self, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The fields given a value, for the core training config (minus `exclude`)."""
        return set_fields(self, exclude | {"embedding_model", "torch_threads"})


class TrainingData(Protocol):
    """Samples read for a training: one stored image each."""

    image_ids: list[str]


T = TypeVar("T", bound=TrainingData)


def training_data(
    postgres: PostgresResource,
    requested: str | None,
    read: Callable[[psycopg.Connection, str], T],
    samples: str,
) -> tuple[str, T]:
    """The embedding model to train against (the `requested` one, else the most stored) and
    what `read` reads for it; fails unless there are two or more `samples` to train on."""
    with postgres.connection() as conn:
        model = requested or most_embedded_model(conn)
        if model is None:
            raise dg.Failure("no image embeddings stored yet: materialise image_embeddings first")
        data = read(conn, model)
    if len(data.image_ids) < 2:
        raise dg.Failure(
            f"too few ({len(data.image_ids)}) {samples} with {model} vectors to train on"
        )
    return model, data


def new_version(made_from: dict[str, Any]) -> str:
    """`<UTC time>-<hash of made_from>`: a new artifact version, sortable and tied to what
    made it."""
    digest = hashlib.sha256(json.dumps(made_from, sort_keys=True, default=str).encode())
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + digest.hexdigest()[:8]


def publish(
    postgres: PostgresResource,
    name: str,
    embedding_model: str,
    settings: dict[str, Any],
    metrics: dict[str, Any],
    save: Callable[[Path], object],
) -> RegisteredModel:
    """Save a trained model as a new version and record it in the `models` table.

    The version is `new_version` of the settings: sortable and tied to what was trained.
    """
    version = new_version({**settings, "embedding_model": embedding_model})
    model = RegisteredModel(
        name,
        version,
        # the run's settings, which every resource holds
        paths.artifacts_dir(postgres.settings.home) / name / version,
        embedding_model,
        settings,
        metrics,
    )
    save(model.path)
    with postgres.connection() as conn:
        register_model(conn, model)
    return model


def promote_if_better(postgres: PostgresResource, model: RegisteredModel, metric: str) -> str:
    """Serve the new `model` only when none is served or its validation `metric` beats the
    served version's (`registry.promotion_decision`); returns the line saying which."""
    with postgres.connection() as conn:
        served = served_model(conn, model.name) if _promoted_any(conn, model.name) else None
        promoted, why = promotion_decision(model, served, metric)
        if promoted:
            promote(conn, model.name, model.version)
    return why


def _promoted_any(conn: psycopg.Connection, name: str) -> bool:
    """Whether a version of `name` was ever promoted (else the served one is just the newest,
    which the new version is now)."""
    row = conn.execute(
        "SELECT 1 FROM models WHERE name = %s AND promoted_at IS NOT NULL LIMIT 1", (name,)
    ).fetchone()
    return row is not None


def training_metadata(
    model: RegisteredModel, loss_curve: list[float], headline: Sequence[str]
) -> dict[str, Any]:
    """Output metadata: the `headline` metrics as numbers, all as JSON, the loss curve."""
    return {
        **{key: float(model.metrics[key]) for key in headline if key in model.metrics},
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
