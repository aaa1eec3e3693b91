"""How `featuregen search` finds the `featuregen serve` running on its home and asks it.

The server writes its URL and process token to `FEATUREGEN_HOME/serve.json` while it runs
(`announced`); the CLI reads it (`running_server`) and sends a text query there
(`search_through`): the server holds the text encoder loaded, so the CLI imports no torch."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from featuregen_assets.core.runtime import paths
from featuregen_assets.core.runtime.processes import process_token, token_alive


class ServerRefused(ValueError):
    """The server refused the query (HTTP 400, 404, 413, 415): its one-line reason."""


def local_url(host: str, port: int) -> str:
    """The URL a process of this host reaches a server bound to `host`:`port` at."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def announced(home: Path, url: str) -> Iterator[None]:
    """`url` in the home's serve file while inside; after, unless replaced since, the server
    it replaced where that one still runs (two serves on one home), else nothing."""
    path = paths.serve_file(home)
    token = process_token()
    before = _record(path)
    _write(path, {"url": url, "process": token})
    try:
        yield
    finally:
        if _record(path).get("process") == token:
            if _live_url(before) is not None:
                _write(path, before)
            else:
                path.unlink(missing_ok=True)


def _write(path: Path, record: dict) -> None:
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.write_text(json.dumps(record))
    staged.replace(path)


def running_server(home: Path) -> str | None:
    """The URL of the server announced in `home` whose process still runs, else None."""
    return _live_url(_record(paths.serve_file(home)))


def _live_url(record: dict) -> str | None:
    """The URL of a serve file's `record` where its process still runs, else None."""
    url = record.get("url")
    if isinstance(url, str) and token_alive(str(record.get("process", ""))):
        return url
    return None


def search_through(
    url: str, params: Mapping[str, object], token: str | None = None, timeout_s: float = 30.0
) -> dict | None:
    """The server's answer to `GET /api/search?<params>` (with the service's `token`, if it
    has one); None when it gives none (not listening, gone, busy, or refusing the token), so
    the caller searches itself. Raises `ServerRefused` when the server refuses the query."""
    import httpx

    try:
        response = httpx.get(
            f"{url}/api/search",
            params=dict(params),
            headers={"Authorization": f"Bearer {token}"} if token else None,
            timeout=httpx.Timeout(timeout_s, connect=1.0),
            trust_env=False,  # a loopback server: no proxy
        )
    except httpx.HTTPError:
        return None
    if response.status_code in (400, 404, 413, 415):
        raise ServerRefused(_detail(response))
    if response.status_code != 200:
        return None
    return response.json()


def _record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _detail(response) -> str:
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
