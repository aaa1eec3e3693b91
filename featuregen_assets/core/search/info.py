"""What GET /api/info says about the store and its search: modes, default, examples drawn
from the store's captions, categories, and the models a query would use."""

from __future__ import annotations

import re
from collections import Counter

import psycopg

from featuregen_assets.core.search.engine import Searcher
from featuregen_assets.core.search.modes import MODES
from featuregen_assets.core.store.registry import most_embedded_model

EXAMPLES = 6
CAPTIONS_READ = 2000  # link captions sampled for examples
_CLAUSES = re.compile(r",\s*|\s+and\s+")
_PLACE = re.compile(r"\s+(at|in|on|near)\s+the\s+.*$")  # "… at the top left": kept out
_SETTING = re.compile(r"^(at|in|on|near)\s")  # a clause that only says where ("in a cafe")


def example_phrases(captions: list[str], count: int = EXAMPLES) -> list[str]:
    """The most frequent short phrases (2–6 words) of the captions: each caption split into
    clauses at commas and "and", a trailing place ("at the top left") dropped, and clauses that
    only say where ("in a cafe", the category every caption of it ends with) left out."""
    phrases: Counter[str] = Counter()
    for caption in captions:
        for clause in _CLAUSES.split(caption.strip().lower()):
            clause = _PLACE.sub("", clause).strip(" .")
            if 2 <= len(clause.split()) <= 6 and not _SETTING.match(clause):
                phrases[clause] += 1
    return [p for p, _ in sorted(phrases.items(), key=lambda item: (-item[1], item[0]))][:count]


def store_info(conn: psycopg.Connection, searcher: Searcher) -> dict:
    """The /api/info answer (SEARCH-API.md)."""
    mode, reason = searcher.default_choice()
    weights, weights_reason = searcher.default_choice.hybrid_weights()
    captions = [
        c
        for (c,) in conn.execute(
            "SELECT prompt FROM image_prompts WHERE source = 'link_caption'"
            " ORDER BY image_id LIMIT %s",
            (CAPTIONS_READ,),
        )
    ]
    categories = dict(
        conn.execute(
            "SELECT category, count(DISTINCT image_id) FROM raw_images WHERE status = 'ok'"
            " GROUP BY category ORDER BY category"
        ).fetchall()
    )
    (total,) = conn.execute(
        "SELECT count(DISTINCT image_id) FROM raw_images WHERE status = 'ok'"
    ).fetchone()
    record = searcher.models.text_encoder_record(conn, None)
    sentence = searcher.models.sentence(conn)
    return {
        "modes": [m.as_dict() for m in MODES],
        "default_mode": mode,
        "default_reason": reason,
        "hybrid_weights": weights,
        "hybrid_weights_reason": weights_reason,
        "examples": example_phrases(captions),
        "categories": categories,
        "total_images": total,
        "models": {
            "embedding_model": record.embedding_model if record else most_embedded_model(conn),
            "text_encoder_version": record.version if record else None,
            "sentence_model": sentence.key if sentence else None,
        },
    }
