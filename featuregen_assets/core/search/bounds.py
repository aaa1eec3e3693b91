"""What a query may hold: bounded text, no NUL characters, and a vector PostgreSQL can store.

Keyword search ranks every prompt that matches any of its words, so its cost grows with the
words given (1,600 words joined by `or` held the database 34 s). A query of more than
`MAX_TERMS` words or `MAX_QUERY_CHARS` characters is refused with a one-line reason (400 in
the API) rather than cut silently: the user learns what was searched.
"""

from __future__ import annotations

import re

import numpy as np

MAX_QUERY_CHARS = 1000
# Words of a query, `or` not counted. Alternatives joined by `or` cost the most: on 40,000
# prompts 8 of them took 1.5 s and 32 took 7.8 s (the statement timeout ends those).
MAX_TERMS = 16
MAX_NAME_CHARS = 200  # a category or an image id
MAX_CURSOR_CHARS = 1000
FLOAT32_MAX = float(np.finfo(np.float32).max)
_WORD = re.compile(r"\w+")


class QueryTooLarge(ValueError):
    """A query beyond what one request may ask (HTTP 400)."""


def check_text(text: str, keywords: bool) -> None:
    """Raise ``QueryTooLarge`` unless ``text`` is within `MAX_QUERY_CHARS` and, when its words
    are searched as ``keywords``, `MAX_TERMS`."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryTooLarge(
            f"the query has {len(text):,} characters; at most {MAX_QUERY_CHARS:,} are searched"
        )
    if not keywords:
        return
    terms = [word for word in _WORD.findall(text) if word.lower() != "or"]
    if len(terms) > MAX_TERMS:
        raise QueryTooLarge(
            f"the query has {len(terms):,} words; at most {MAX_TERMS} are searched: shorten it"
        )


def check_strings(**fields: str | None) -> None:
    """Raise ``ValueError`` naming the first field that holds a NUL character (PostgreSQL
    text cannot) or is longer than its limit (a cursor `MAX_CURSOR_CHARS`, the others
    `MAX_NAME_CHARS`; the query's own text is `check_text`'s)."""
    for name, value in fields.items():
        if value is None:
            continue
        if "\x00" in value:
            raise ValueError(f"{name} contains a NUL character")
        limit = MAX_CURSOR_CHARS if name == "cursor" else MAX_NAME_CHARS
        if name != "the query" and len(value) > limit:
            raise ValueError(f"{name} is {len(value):,} characters long; at most {limit:,}")


def check_vector_values(vector: np.ndarray) -> None:
    """Raise ``ValueError`` unless every number is finite and within float32's range (the
    store's type: a larger one overflows to infinity and ranks nothing)."""
    if not np.isfinite(vector).all() or float(np.abs(vector).max(initial=0.0)) > FLOAT32_MAX:
        raise ValueError(f"the vector's numbers must be finite and within ±{FLOAT32_MAX:.3g}")
