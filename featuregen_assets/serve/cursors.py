"""Signed cursors: the API hands out only cursors it can recognise as its own.

A `next_cursor` is the search engine's cursor with an HMAC-SHA256 tag appended; a cursor
whose tag does not match this service's key is refused (400) before it is parsed, so a
forged or truncated cursor never reaches the engine. The key lives in the home
(`cursor_key`), made on first use, readable by its owner only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from featuregen_assets.core.search.engine import BadQuery

KEY_BYTES = 32
TAG_CHARS = 22  # 128 bits of the tag, URL-safe base64


def cursor_key(path: Path) -> bytes:
    """The key in ``path``, written there first (mode 0600) when there is none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < KEY_BYTES:
            raise ValueError(f"{path} holds no cursor key: delete it to make a new one") from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class CursorSigner:
    """Signs the engine's cursors and checks the ones that come back."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, cursor: str) -> str:
        digest = hmac.new(self._key, cursor.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:TAG_CHARS]

    def sign(self, cursor: str | None) -> str | None:
        """``cursor`` with its tag (None stays None)."""
        return None if cursor is None else f"{cursor}.{self._tag(cursor)}"

    def verify(self, signed: str | None) -> str | None:
        """The engine's cursor inside ``signed``; raises BadQuery unless its tag is ours."""
        if not signed:
            return None
        cursor, _, tag = signed.rpartition(".")
        if not cursor or not hmac.compare_digest(tag.encode(), self._tag(cursor).encode()):
            raise BadQuery("cursor is not one this service made: pass back a next_cursor as is")
        return cursor
