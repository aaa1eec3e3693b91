"""Run-config helpers shared by the assets."""

from typing import Any

import dagster as dg


def set_fields(config: dg.Config, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Config fields given a value (not None), minus `exclude`: the core defaults fill the rest."""
    return {
        name: value
        for name, value in config.model_dump().items()
        if value is not None and name not in exclude
    }
