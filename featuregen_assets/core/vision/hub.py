"""Fail fast, saying what to do, when a hub model is neither local nor reachable.

transformers retries an unreachable hub for about a minute and a half per model, then says
"make sure you don't have a local directory with the same name". One short request here
tells the user at once what is wrong and how to go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass(frozen=True)
class HubAccess:
    """How to reach the Hugging Face hub: Hugging Face's own `HF_ENDPOINT`, `HF_HUB_OFFLINE`
    and `HF_TOKEN`, which transformers obeys too (the settings read them)."""

    endpoint: str = "https://huggingface.co"
    offline: bool = False
    token: str | None = field(default=None, repr=False)


class ModelUnavailable(RuntimeError):
    """A model that cannot be loaded from anywhere this machine can reach."""


def ensure_available(name_or_path: str, hub: HubAccess, setting: str, timeout: float = 5.0) -> None:
    """Return if ``name_or_path`` is a local directory, in the Hugging Face cache or on a
    reachable hub; else raise `ModelUnavailable` with what to do (``setting``: the variable
    that picks this model)."""
    if Path(name_or_path).is_dir():
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
        return
    advice = (
        f"download it once where the hub is reachable (`hf download {name_or_path}`), point"
        f" {setting} at a local copy, or use FEATUREGEN_MODELS=tiny"
    )
    if hub.offline:
        raise ModelUnavailable(
            f"model {name_or_path!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set:"
            f" {advice}"
        )
    endpoint = hub.endpoint.rstrip("/")
    headers = {"Authorization": f"Bearer {hub.token}"} if hub.token else {}
    try:
        response = httpx.get(
            f"{endpoint}/api/models/{name_or_path}", headers=headers, timeout=timeout
        )
    except httpx.HTTPError as e:
        raise ModelUnavailable(
            f"model {name_or_path!r} is not in the Hugging Face cache and {endpoint} cannot be"
            f" reached ({type(e).__name__}): {advice}"
        ) from e
    if response.status_code in (401, 404):  # the hub answers 401 for ids it will not show
        raise ModelUnavailable(
            f"{endpoint} has no model {name_or_path!r} that this machine may read: check the id"
            f" ({setting}) or set HF_TOKEN for a private model"
        )
