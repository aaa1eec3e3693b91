"""The `models` table: trained models (text encoder, decoder) with their config and metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class RegisteredModel:
    """One trained model version and where its files are."""

    name: str
    version: str
    path: Path
    embedding_model: str
    config: dict
    metrics: dict


def register_model(conn: psycopg.Connection, model: RegisteredModel) -> None:
    """Record a trained model version (replacing a record of the same name and version)."""
    conn.execute(
        """
        INSERT INTO models (name, version, path, embedding_model, config, metrics)
        VALUES (%s, %s, %s, %s, %s, %s)
        ON CONFLICT (name, version) DO UPDATE SET
            path = EXCLUDED.path, embedding_model = EXCLUDED.embedding_model,
            config = EXCLUDED.config, metrics = EXCLUDED.metrics, created_at = now()
        """,
        (
            model.name,
            model.version,
            str(model.path),
            model.embedding_model,
            Jsonb(json.loads(json.dumps(model.config, default=str))),
            Jsonb(json.loads(json.dumps(model.metrics, default=str))),
        ),
    )


_COLUMNS = "name, version, path, embedding_model, config, metrics"


def _record(row) -> RegisteredModel | None:
    if row is None:
        return None
    name, version, path, embedding_model, config, metrics = row
    return RegisteredModel(name, version, Path(path), embedding_model, config, metrics)


def latest_model(conn: psycopg.Connection, name: str) -> RegisteredModel | None:
    """The newest registered version of `name`, or None."""
    return _record(
        conn.execute(
            f"SELECT {_COLUMNS} FROM models WHERE name = %s ORDER BY created_at DESC LIMIT 1",
            (name,),
        ).fetchone()
    )


def model_version(conn: psycopg.Connection, name: str, version: str) -> RegisteredModel | None:
    """Version `version` of `name`, or None."""
    return _record(
        conn.execute(
            f"SELECT {_COLUMNS} FROM models WHERE name = %s AND version = %s", (name, version)
        ).fetchone()
    )


def served_model(conn: psycopg.Connection, name: str) -> RegisteredModel | None:
    """The version of `name` that search serves: the last one promoted (`promote`), else,
    where none ever was, the newest registered."""
    return _record(
        conn.execute(
            f"SELECT {_COLUMNS} FROM models WHERE name = %s"
            " ORDER BY promoted_at DESC NULLS LAST, created_at DESC LIMIT 1",
            (name,),
        ).fetchone()
    )


def promote(conn: psycopg.Connection, name: str, version: str) -> RegisteredModel:
    """Make `version` of `name` the served one; LookupError names the versions there are."""
    row = conn.execute(
        f"UPDATE models SET promoted_at = clock_timestamp() WHERE name = %s AND version = %s"
        f" RETURNING {_COLUMNS}",
        (name, version),
    ).fetchone()
    if row is None:
        known = [
            v
            for (v,) in conn.execute(
                "SELECT version FROM models WHERE name = %s ORDER BY created_at", (name,)
            )
        ]
        raise LookupError(
            f"no {name} version {version!r}: registered are {', '.join(known) or 'none'}"
        )
    return _record(row)


def models_of(conn: psycopg.Connection, name: str) -> list[tuple[RegisteredModel, bool]]:
    """Every registered version of `name`, oldest first, each with whether it is served."""
    served = served_model(conn, name)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM models WHERE name = %s ORDER BY created_at", (name,)
    ).fetchall()
    records = [_record(row) for row in rows]
    return [(r, served is not None and r.version == served.version) for r in records]


def promotion_decision(
    new: RegisteredModel, served: RegisteredModel | None, metric: str
) -> tuple[bool, str]:
    """Whether a newly trained `new` replaces the `served` version by itself: when none is
    served, or when `new`'s `metric` (a validation figure, higher is better) beats the served
    one's on the same embedding model; and a line saying why."""
    if served is None:
        return True, f"promoted {new.version}: no version of {new.name} was served"
    ours, theirs = new.metrics.get(metric), served.metrics.get(metric)
    if new.embedding_model != served.embedding_model:
        return False, (
            f"not promoted: {new.version} is trained against {new.embedding_model}, the served"
            f" {served.version} against {served.embedding_model}; promote it by hand"
        )
    if ours is None or theirs is None:
        return False, f"not promoted: {metric} is not recorded for both versions"
    figures = (
        f"{metric} {float(ours):.4f} against the served {served.version}'s {float(theirs):.4f}"
    )
    if float(ours) > float(theirs):
        return True, f"promoted {new.version}: {figures}"
    return False, (
        f"not promoted: {new.version}'s {figures} (`featuregen models promote {new.version}`"
        " serves it anyway)"
    )


def most_embedded_model(conn: psycopg.Connection) -> str | None:
    """The embedding model with the most stored vectors (the default to train against)."""
    row = conn.execute(
        "SELECT model FROM image_embeddings GROUP BY model ORDER BY count(*) DESC, model LIMIT 1"
    ).fetchone()
    return row[0] if row else None
