"""Where featuregen keeps its state under the state directory (`Settings.home`)."""

from __future__ import annotations

from pathlib import Path


def images_dir(home: Path) -> Path:
    """The content-addressed image store."""
    return home / "images"


def models_dir(home: Path) -> Path:
    """Locally built model files (the `tiny` profile)."""
    return home / "models"


def artifacts_dir(home: Path) -> Path:
    """Trained models (text encoder, decoder)."""
    return home / "artifacts"


def query_graphs_dir(home: Path) -> Path:
    """Query encoders exported for ONNX Runtime (`core.text.query_graph`), per source."""
    return home / "query-graphs"


def research_reports_dir(home: Path) -> Path:
    """The research report's versions (`<version>/report.json`): the search default's source."""
    return artifacts_dir(home) / "research_report"


def checkpoints_dir(home: Path) -> Path:
    """Rows of unfinished model steps (`core.runtime.checkpoint`)."""
    return home / "checkpoints"


def logs_dir(home: Path) -> Path:
    """The full logs of failed CLI runs."""
    return home / "logs"


def text_links_dir(home: Path) -> Path:
    """Each run's own copy of its link file (a tabular one also as the .txt the downloader
    reads), deleted when the run ends."""
    return home / "links-as-text"


def patch_grids_dir(home: Path) -> Path:
    """Patch-token grids of stored images, per embedding model (`research.patch_grids`)."""
    return home / "patch_grids"


def serve_file(home: Path) -> Path:
    """The URL of the `featuregen serve` running on this home, while it runs."""
    return home / "serve.json"
