"""Queries that are not words: a file that is no image is refused before any model loads."""

from __future__ import annotations

import pytest

from featuregen_assets.core.search.engine import NotAnImage, Searcher, SearchQuery
from featuregen_assets.core.store import db


@pytest.mark.parametrize("data", [b"# a README, not an image\n", b"\x89PNG\r\n\x1a\n broken"])
def test_a_file_that_is_no_image_is_refused_before_the_embedder_loads(database_url, data):
    loaded = []
    searcher = Searcher(embedder_factory=lambda: loaded.append(1))
    with db.connection(database_url) as conn, pytest.raises(NotAnImage, match="the file "):
        searcher.search(conn, SearchQuery(image=data))
    assert loaded == []
