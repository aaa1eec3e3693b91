"""featuregen: image links → a DINOv2 feature store in PostgreSQL + pgvector, via Dagster."""

import warnings

# Warnings that tell a featuregen user nothing they can act on: Dagster's notes on its own
# preview and beta APIs, and platformdirs' fallback when XDG_RUNTIME_DIR is unset.
_KNOWN_WARNINGS = (r".*is currently in (preview|beta)", "XDG_RUNTIME_DIR")
# The same as PYTHONWARNINGS entries (literal message prefixes), for processes featuregen
# starts that may warn before they import this package (dagster dev's webserver and daemon).
KNOWN_WARNINGS_ENV = (
    "ignore:Specifying a partitions_def on an AssetCheckSpec,ignore:XDG_RUNTIME_DIR"
)


def quiet_known_warnings() -> None:
    """Ignore the known warnings in this process (every process that imports featuregen)."""
    for message in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


quiet_known_warnings()
