"""Where featuregen keeps its state on local disk, from the environment."""

from __future__ import annotations

import os
from pathlib import Path


def featuregen_home() -> Path:
    """The state directory: `FEATUREGEN_HOME`, default `./.featuregen`, made absolute."""
    return Path(os.environ.get("FEATUREGEN_HOME", ".featuregen")).expanduser().resolve()


def links_dir() -> Path:
    """The directory watched for `<category>.txt` link files: `FEATUREGEN_LINKS_DIR`."""
    return Path(os.environ.get("FEATUREGEN_LINKS_DIR", "data/links")).expanduser().resolve()


def images_dir(home: Path | None = None) -> Path:
    """The content-addressed image store under the state directory."""
    return (home or featuregen_home()) / "images"


def models_dir(home: Path | None = None) -> Path:
    """Locally built model files (the `tiny` profile) under the state directory."""
    return (home or featuregen_home()) / "models"


def artifacts_dir(home: Path | None = None) -> Path:
    """Trained models (text encoder, decoder) under the state directory."""
    return (home or featuregen_home()) / "artifacts"


def checkpoints_dir(home: Path | None = None) -> Path:
    """Rows of unfinished model steps (`core.checkpoint`) under the state directory."""
    return (home or featuregen_home()) / "checkpoints"
