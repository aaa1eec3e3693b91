"""The run's `Settings` as a Dagster resource: assets and resources take their values from it."""

import dagster as dg

from featuregen_assets.settings import Settings


def settings_resource(settings: Settings | None = None) -> Settings | dg.ResourceDefinition:
    """`settings` themselves, else a resource that reads FEATUREGEN_* when a run starts (so a
    code location's definitions load without reading them, and tests can set them late)."""
    if settings is not None:
        return settings
    return dg.ResourceDefinition(
        resource_fn=lambda _: Settings.from_env(),
        description="featuregen's settings, from FEATUREGEN_* variables when the run starts.",
    )
