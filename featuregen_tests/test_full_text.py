"""Keyword ranking: best cover density first, only images still stored, category scope."""

from __future__ import annotations

import pytest

from featuregen_assets.core.store import db
from featuregen_assets.core.store.full_text import (
    keyword_matches,
    keyword_ranked,
    keyword_ranked_scopes,
)
from featuregen_assets.core.vision.model_profiles import TINY_ID_PREFIX

# (image id, category, status, prompt): the red circles rank by how closely their words stand;
# the file of an image whose row is no longer ok is gone (its row keeps no image id).
IMAGES = [
    ("gone1", "cafe", "missing", "a large red circle"),
    ("gone2", "cafe", "damaged", "a large red circle"),
    ("near", "cafe", "ok", "a large red circle at the top"),
    ("apart", "bank", "ok", "a large blue square and a red circle"),
    ("far", "bank", "ok", "a large star, a green ring, a cross and a red circle"),
    ("other", "bank", "ok", "a yellow triangle"),
]


@pytest.fixture
def conn(database_url: str):
    with db.connection(database_url) as conn:
        for image_id, category, status, prompt in IMAGES:
            conn.execute(
                "INSERT INTO raw_images (category, url, status, image_id, path)"
                " VALUES (%s, %s, %s, %s, '')",
                (category, f"http://x/{image_id}", status, image_id if status == "ok" else None),
            )
            conn.execute(
                "INSERT INTO image_prompts (image_id, model, source, prompt)"
                " VALUES (%s, 'test/captioner', 'generated', %s)",
                (image_id, prompt),
            )
        conn.commit()
        yield conn


def test_ranks_stored_matches_by_cover_density(conn):
    found = keyword_ranked(conn, "large red circle", limit=10)
    assert [image_id for image_id, _ in found] == ["near", "apart", "far"]
    assert found[0][1] > found[1][1] > found[2][1] > 0


def test_images_no_longer_stored_never_fill_the_page(conn):
    """The two best matches are gone: a one-hit page looks deeper than its first fetch."""
    assert [image_id for image_id, _ in keyword_ranked(conn, "large red circle", limit=1)] == [
        "near"
    ]


def test_category_and_cursor(conn):
    in_bank = keyword_ranked(conn, "red circle", limit=10, category="bank")
    assert [image_id for image_id, _ in in_bank] == ["apart", "far"]
    first = keyword_ranked(conn, "large red circle", limit=1)[0]
    after = keyword_ranked(conn, "large red circle", limit=10, after=(-first[1], first[0]))
    assert [image_id for image_id, _ in after] == ["apart", "far"]


@pytest.mark.parametrize("limit", [1, 2, 10])
@pytest.mark.parametrize("categories", [[None, "bank", "cafe"], ["bank"], ["cafe", "bank"]])
def test_scopes_ranked_in_one_pass_equal_each_ranked_alone(conn, limit, categories):
    """With or without an unfiltered scope (without one, only the scopes' categories'
    matches are ranked)."""
    scopes = [(limit + i, category) for i, category in enumerate(categories)]
    together = keyword_ranked_scopes(conn, "large red circle", scopes)
    for lim, category in scopes:
        alone = keyword_ranked(conn, "large red circle", limit=lim, category=category)
        assert together[(lim, category)] == alone


def test_a_random_weight_captioners_prompts_match_only_when_asked_for(conn):
    """The tiny profile's captioner writes noise: like caption search, keyword search leaves
    its prompts out unless random prompts are asked for."""
    conn.execute(
        "INSERT INTO raw_images (category, url, status, image_id, path)"
        " VALUES ('cafe', 'http://x/noise', 'ok', 'noise', '')"
    )
    conn.execute(
        "INSERT INTO image_prompts (image_id, model, source, prompt)"
        f" VALUES ('noise', '{TINY_ID_PREFIX}qwen2vl@0', 'generated', 'large red circle')"
    )
    found = [i for i, _ in keyword_ranked(conn, "large red circle", limit=10)]
    assert found == ["near", "apart", "far"] and keyword_matches(conn, "red circle", None) == 3
    both = keyword_ranked(conn, "large red circle", limit=10, random_prompts=True)
    assert "noise" in [i for i, _ in both] and keyword_matches(conn, "red circle", None, True) == 4
    scoped = keyword_ranked_scopes(conn, "red circle", [(10, None), (10, "cafe")])
    assert "noise" not in {i for ranked in scoped.values() for i, _ in ranked}


def test_a_keyword_querys_total_is_kept_for_its_next_pages(conn):
    from featuregen_assets.core.search.counts import TotalCounter

    counter = TotalCounter()
    first = counter.total(conn, ("keyword",), None, None, None, "red circle")
    assert first == 3  # near, apart, far: still stored
    conn.execute(
        "INSERT INTO raw_images (category, url, status, image_id, path)"
        " VALUES ('cafe', 'http://x/new', 'ok', 'new', '')"
    )
    conn.execute(
        "INSERT INTO image_prompts (image_id, model, source, prompt)"
        " VALUES ('new', 'test/captioner', 'generated', 'a red circle')"
    )
    assert counter.total(conn, ("keyword",), None, None, None, "red circle") == first  # kept
    assert counter.total(conn, ("keyword",), None, None, "cafe", "red circle") == 2  # its own
    assert TotalCounter().total(conn, ("keyword",), None, None, None, "red circle") == 4
