"""Keyset cursors: where the next page starts, tied to the query that made them.

A cursor holds how many hits came before it and the sort key (ascending: a distance, or a
negated score) and id of the last hit handed out; the next page is what ranks strictly after
that key, so each hit is handed out once across pages whatever the page sizes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass


class BadCursor(ValueError):
    """A cursor that does not parse or belongs to another query."""


@dataclass(frozen=True)
class Cursor:
    """The position after ``position`` hits, the last of which had ``key`` and ``image_id``."""

    position: int
    key: float
    image_id: str
    query: str  # fingerprint of the query the cursor pages through

    def encode(self) -> str:
        """An opaque URL-safe token."""
        payload = json.dumps([self.position, self.key, self.image_id, self.query])
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, query: str) -> Cursor:
        """The cursor of ``token``; raises BadCursor unless it parses and was made for
        ``query`` (a fingerprint)."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            position, key, image_id, fingerprint = json.loads(raw)
            cursor = cls(int(position), float(key), str(image_id), str(fingerprint))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as error:
            raise BadCursor(
                "cursor does not parse: pass back a next_cursor of the same query"
            ) from error
        if cursor.query != query or cursor.position < 1:
            raise BadCursor("cursor belongs to another query: pass back its own next_cursor")
        return cursor


def fingerprint(*parts: object) -> str:
    """A short stable digest of a query's defining parts (bytes hashed as they are)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else repr(part).encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:16]
