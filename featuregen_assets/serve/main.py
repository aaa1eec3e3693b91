"""`featuregen serve`: the application over this installation's database and image store."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featuregen_assets.settings import Settings

DEFAULT_HOST = "127.0.0.1"  # loopback unless told otherwise
DEFAULT_PORT = 8000


def build_embedder(settings: Settings):
    """The DINOv2 embedder of `settings`' model profile."""
    from featuregen_assets.definitions import build_resources

    return build_resources(settings)["embedder"].build()


def serve(
    settings: Settings, database_url: str, host: str, port: int, int8_text_encoder: bool = True
) -> None:
    """Serve the search API and page on `database_url` (migrated) until interrupted."""
    import uvicorn

    from featuregen_assets.core.runtime import paths
    from featuregen_assets.serve.app import ServeConfig, create_app

    config = ServeConfig(
        database_url=database_url,
        images_dir=paths.images_dir(settings.home),
        thumbs_dir=settings.home / "thumbs",
        embedder_factory=lambda: build_embedder(settings),
        int8_text_encoder=int8_text_encoder,
    )
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")
