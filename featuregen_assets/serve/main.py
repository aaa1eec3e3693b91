"""`featuregen serve`: the application over this installation's database and image store."""

from __future__ import annotations

import errno
import ipaddress
import re
import signal
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featuregen_assets.settings import Settings

DEFAULT_HOST = "127.0.0.1"  # loopback unless told otherwise
DEFAULT_PORT = 8000
CURSOR_KEY_FILE = "serve-cursor-key"  # in the home
MIN_TOKEN_CHARS = 16
TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")  # what a cookie and a header carry unquoted


class ServeRefused(ValueError):
    """`serve` will not start as asked; the message says why in one line."""


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, without_token: bool) -> str | None:
    """Raise ServeRefused when ``host`` is beyond loopback and there is no token (unless
    ``without_token``) or the token is unusable; return the warning to print, if any."""
    if token is not None and (len(token) < MIN_TOKEN_CHARS or not TOKEN.fullmatch(token)):
        raise ServeRefused(
            f"FEATUREGEN_SERVE_TOKEN must be at least {MIN_TOKEN_CHARS} characters of"
            " A-Z a-z 0-9 . _ ~ + / = - (e.g. `python -c 'import secrets;"
            " print(secrets.token_urlsafe(32))'`)"
        )
    if token is not None or is_loopback(host):
        return None
    if not without_token:
        raise ServeRefused(
            f"--host {host} serves beyond this machine: set FEATUREGEN_SERVE_TOKEN (every"
            " request then needs it), or pass --no-token to serve every stored image to anyone"
            " who reaches the port"
        )
    return (
        f"WARNING: serving on {host} with no token: anyone who reaches this port can search"
        " and read every stored image (set FEATUREGEN_SERVE_TOKEN)"
    )


def check_port(host: str, port: int) -> None:
    """Raise ServeRefused when ``host``:``port`` cannot be listened on (in use, no address of
    this machine, a privileged port): before the app loads and its URL is announced, where
    uvicorn would say so only after both."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            hint = " (pick another with --port)" if error.errno == errno.EADDRINUSE else ""
            reason = error.strerror or str(error)
            raise ServeRefused(f"cannot listen on {host}:{port}: {reason}{hint}") from None


def build_embedder(settings: Settings):
    """The image embedder of `settings`' model profile (as `image_embeddings` builds it)."""
    from featuregen_assets.core.vision.embedding import ImageEmbedder

    return ImageEmbedder(settings.model("image_embedder"), settings.compute, settings.embedding)


def build_searcher(settings: Settings):
    """A `Searcher` with `settings`' sentence encoder, search settings and default mode (the
    stored research report's measured best unless FEATUREGEN_SEARCH_MODE says)."""
    from featuregen_assets.core.runtime.paths import query_graphs_dir, research_reports_dir
    from featuregen_assets.core.search.default_mode import DefaultMode
    from featuregen_assets.core.search.engine import Searcher

    return Searcher(
        lambda: build_embedder(settings),
        sentence_encoder=settings.sentence_encoder,
        settings=settings.search,
        default_mode=DefaultMode(settings.search, research_reports_dir(settings.home)),
        query_graphs_dir=query_graphs_dir(settings.home),
    )


def serve(
    settings: Settings,
    database_url: str,
    host: str,
    port: int,
    int8_text_encoder: bool = True,
) -> None:
    """Serve the search API and page on `database_url` (migrated) until interrupted (call
    `check_exposure` first); its URL is in the home's serve file meanwhile, for `featuregen
    search` (`discovery`)."""
    import uvicorn

    from featuregen_assets.core.runtime import paths
    from featuregen_assets.serve.app import MAX_UPLOAD_BYTES, ServeConfig, create_app
    from featuregen_assets.serve.cursors import cursor_key
    from featuregen_assets.serve.discovery import announced, local_url

    config = ServeConfig(
        database_url=database_url,
        images_dir=paths.images_dir(settings.home),
        thumbs_dir=settings.home / "thumbs",
        embedder_factory=lambda: build_embedder(settings),
        max_upload_bytes=min(settings.download.max_bytes, MAX_UPLOAD_BYTES),
        max_upload_pixels=settings.download.max_pixels,
        int8_text_encoder=int8_text_encoder,
        cursor_key=cursor_key(settings.home / CURSOR_KEY_FILE),
        bound_host=host,
        allowed_hosts=settings.serve_allowed_hosts,
        token=settings.serve_token,
        sentence_encoder=settings.sentence_encoder,
        search=settings.search,
        reports_dir=paths.research_reports_dir(settings.home),
        query_graphs_dir=paths.query_graphs_dir(settings.home),
    )
    # uvicorn stops gracefully on SIGTERM, then raises it again: leave through `announced`.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with announced(settings.home, local_url(host, port)):
        uvicorn.run(create_app(config), host=host, port=port, log_level="info")


def _exit_on_signal(signum: int, _frame) -> None:
    """Exit (status 128 + the signal) by raising, so that cleanups run on the way out."""
    raise SystemExit(128 + signum)
