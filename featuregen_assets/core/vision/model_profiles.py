"""Which models a run uses: the real hub models, or tiny architecture-identical local builds.

The ``tiny`` profile loads ``<models dir>/tiny/<role>/`` through the same ``from_pretrained``
path as the hub ids; `featuregen_assets.demo.tiny_models` builds them (``featuregen models
build-tiny``, the demo, the tests).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from featuregen_assets.core.vision.hub import HubAccess, ensure_available

PROFILES = ("real", "tiny")
ROLES = ("dinov2", "qwen2vl", "clip_text")
DEFAULT_DINOV2 = "facebook/dinov2-base"
REAL_IDS = {
    "dinov2": DEFAULT_DINOV2,
    "qwen2vl": "Qwen/Qwen2-VL-2B-Instruct",
    "clip_text": "openai/clip-vit-base-patch32",
}

TINY_ID_PREFIX = "tiny/"  # model ids (and keys) of the tiny profile's random-weight builds

# Config keys that say nothing about what a model computes.
_VOLATILE_KEYS = {"transformers_version", "_name_or_path", "dtype", "torch_dtype", "_commit_hash"}


@dataclass(frozen=True)
class ModelSpec:
    """One model a step loads: its role, what ``from_pretrained`` gets, and the id rows record."""

    role: str
    name_or_path: str
    model_id: str


class TinyModelMissing(FileNotFoundError):
    """A tiny model that is not built: the message says how to build it."""


def resolve_model(
    profile: str, role: str, models_dir: Path, real_id: str | None = None
) -> ModelSpec:
    """The model of one role for a profile; a ``tiny`` one must be built under `models_dir`.

    ``real_id`` replaces the real profile's hub id (or path) of the role (`REAL_IDS`), e.g.
    another DINOv2 size (``facebook/dinov2-small|base|large|giant``, with or without
    ``-with-registers``); the tiny profile has one tiny model per role.
    """
    if role not in ROLES:
        raise ValueError(f"unknown model role {role!r}: expected one of {ROLES}")
    if profile == "real":
        name = real_id or REAL_IDS[role]
        return ModelSpec(role, name, name)
    if profile == "tiny":
        path = tiny_dir(role, models_dir)
        if not path.is_dir():
            raise TinyModelMissing(
                f"the tiny {role} model is not built in {path}:"
                " build it with `featuregen models build-tiny`"
            )
        return ModelSpec(role, str(path), f"{TINY_ID_PREFIX}{role}")
    raise ValueError(f"unknown model profile {profile!r}: expected one of {PROFILES}")


def choose_model(
    role: str,
    profile: str,
    models_dir: Path,
    chosen: str | None,
    hub: HubAccess,
    setting: str,
) -> ModelSpec:
    """The model of `role`: resolved for `profile` (`resolve_model`, ``chosen`` replacing the
    real profile's id), and in the real profile cached, local or on a reachable hub
    (`ensure_available`; ``setting`` names the variable that picks it in the error)."""
    spec = resolve_model(profile, role, models_dir, chosen)
    if profile == "real":
        ensure_available(spec.name_or_path, hub, setting)
    return spec


def resolve_models(
    profile: str, models_dir: Path, dinov2: str = DEFAULT_DINOV2
) -> dict[str, ModelSpec]:
    """The model of every role for a profile (see `resolve_model`)."""
    return {
        role: resolve_model(profile, role, models_dir, dinov2 if role == "dinov2" else None)
        for role in ROLES
    }


def model_key(model_id: str, config: dict) -> str:
    """``<model_id>@<8 hex>``: the hash covers the config and the settings that change outputs."""
    payload = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return f"{model_id}@{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


def config_fingerprint(config) -> dict:
    """The parts of a transformers config that define the computation (for ``model_key``)."""
    return {k: v for k, v in config.to_diff_dict().items() if k not in _VOLATILE_KEYS}


def tiny_dir(role: str, models_dir: Path) -> Path:
    """Where the tiny model of a role lives."""
    return Path(models_dir) / "tiny" / role


def random_weights(key: str) -> bool:
    """Whether a model key (or id) names a tiny profile build, whose weights are random."""
    return key.startswith(TINY_ID_PREFIX)
