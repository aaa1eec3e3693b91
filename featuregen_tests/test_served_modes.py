"""The research report's rows for the served search modes, and the default mode they choose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from featuregen_assets.core.search.default_mode import DefaultMode, measured_default
from featuregen_assets.core.search.options import SearchSettings
from featuregen_assets.core.store import db
from featuregen_assets.core.training.splits import three_way_split
from featuregen_assets.research.hybrid_tuning import candidate_weights, tune_weights
from featuregen_assets.research.queries import Query, QueryMatrix
from featuregen_assets.research.served_modes import (
    fused_scores,
    served_mode_answer,
    served_mode_rows,
)
from featuregen_assets.research.text_to_image import Corpus
from featuregen_tests.search_store import store_text_vectors

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "star")


@pytest.fixture
def stored(database_url: str):
    """60 images whose captions say their colour and shape, a random prompt each, their text
    vectors; image vectors that know nothing (the image mode's encoder is random)."""
    rng = np.random.default_rng(0)
    ids = [f"img{i:03d}" for i in range(60)]
    truth = {image_id: (COLOURS[i % 4], SHAPES[(i // 4) % 3]) for i, image_id in enumerate(ids)}
    captions = {i: [f"a {c} {s} number {n}"] for n, (i, (c, s)) in enumerate(truth.items())}
    with db.connection(database_url) as conn:
        for image_id in ids:
            conn.execute(
                "INSERT INTO raw_images (category, url, status, image_id, caption)"
                " VALUES ('cafe', %s, 'ok', %s, %s)",
                (f"http://x/{image_id}", image_id, captions[image_id][0]),
            )
            conn.execute(
                "INSERT INTO image_prompts (image_id, model, source, prompt) VALUES"
                " (%s, 'link-file:cafe', 'link_caption', %s),"
                " (%s, 'tiny/qwen2vl@0', 'generated', 'zebra lantern quokka')",
                (image_id, captions[image_id][0], image_id),
            )
        store_text_vectors(conn)
    corpus = Corpus(ids, rng.normal(size=(60, 16)), dict.fromkeys(ids, "cafe"), captions)
    queries = []
    for image_id, (colour, shape) in truth.items():
        same = frozenset(i for i, t in truth.items() if t == (colour, shape))
        queries.append(Query("template", captions[image_id][0], frozenset({image_id}), image_id))
        queries.append(Query("paraphrase", f"one {colour} {shape}", same, image_id))
        queries.append(Query("partial_object", f"a {colour} {shape}", same, image_id))
    return database_url, corpus, queries


def _random_encoder(texts):
    vectors = np.random.default_rng(len(texts)).normal(size=(len(texts), 16))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_every_served_mode_has_rows_and_the_report_chooses_the_default(
    stored, tmp_path: Path
) -> None:
    url, corpus, queries = stored
    split = three_way_split(corpus.image_ids, 0.3, 0.2)
    with db.connection(url) as conn:
        rows, tuned = served_mode_rows(conn, corpus, split, queries, _random_encoder)
    by = {(m.query_set, m.method, m.metric): m for m in rows}
    for query_set in ("template", "paraphrase", "partial_object"):
        for mode in ("caption", "image", "keyword", "hybrid"):
            m = by[(query_set, f"served mode: {mode}", "recall@5")]
            assert m.ci_low <= m.value <= m.ci_high and m.n > 0
    # captions say colour and shape; the random encoder's image vectors say nothing
    for query_set in ("template", "partial_object"):
        caption = by[(query_set, "served mode: caption", "recall@5")].value
        assert caption > by[(query_set, "served mode: image", "recall@5")].value
    assert by[("template", "served mode: caption", "recall@1")].value == 1.0
    [answer] = served_mode_answer(rows, tuned)
    assert "validation split" in answer and f"{tuned.value:.3f}" in answer
    (tmp_path / "v1").mkdir()
    report = tmp_path / "v1" / "report.json"
    report.write_text(json.dumps({"rows": [m.as_dict() for m in rows]}))
    mode, why = measured_default(report)
    assert answer.startswith(f"Which mode should a user of this store search with? {mode} (")
    assert mode in ("caption", "hybrid") and "v1" in why
    assert DefaultMode(SearchSettings(), tmp_path)() == (mode, why)
    assert DefaultMode(SearchSettings(default_mode="keyword"), tmp_path)()[0] == "keyword"
    # hybrid's weights: chosen on the validation images, read by the service from report.json
    assert tuned is not None and tuned.queries > 0 and 0 <= tuned.value <= 1
    assert sum(w > 0 for w in tuned.weights.values()) >= 2
    report.write_text(json.dumps({"hybrid_weights": tuned.as_dict(), "rows": []}))
    weights, why = DefaultMode(SearchSettings(), tmp_path).hybrid_weights()
    assert weights == tuned.weights and "validation split" in why and "v1" in why
    pinned = DefaultMode(SearchSettings(hybrid_weights=("keyword=1", "caption=1")), tmp_path)
    assert pinned.hybrid_weights() == (
        {"keyword": 1.0, "caption": 1.0},
        "set by FEATUREGEN_HYBRID_WEIGHTS",
    )


def test_weights_are_tuned_to_what_finds_the_validation_images() -> None:
    """Keyword ranks each query's image first, caption last: the keyword-led weights win."""
    positives = np.eye(6, dtype=bool)
    keyword = np.where(positives, 1.0, 0.1)
    caption = np.where(positives, 0.0, np.arange(6.0)[None, :] + 1)
    matrix = QueryMatrix([], positives, None, [f"q{i}" for i in range(6)], 0)
    lists = {"caption": caption, "keyword": keyword}
    validation = dict.fromkeys(("template", "paraphrase", "partial_object"), (lists, matrix))
    tuned = tune_weights(validation, lambda scores, w: fused_scores(scores, list(scores), w))
    assert tuned.value == 1.0 and tuned.queries == 18
    assert tuned.weights["keyword"] > tuned.weights["caption"] > 0
    assert tuned.candidates == len(candidate_weights(["caption", "keyword"]))


def test_weight_candidates_read_two_lists_and_differ_in_more_than_scale() -> None:
    candidates = candidate_weights(["image", "caption", "keyword"])
    shapes = set()
    for weights in candidates:
        read = [w for w in weights.values() if w > 0]
        assert len(read) >= 2
        shapes.add(tuple(round(w / max(read), 6) for w in weights.values()))
    assert len(shapes) == len(candidates)
    assert {"image": 0.0, "caption": 2.0, "keyword": 1.0} in candidates


def test_no_report_means_the_fallback_default(tmp_path: Path) -> None:
    mode, why = DefaultMode(SearchSettings(), tmp_path)()
    assert mode == "hybrid" and "no stored research report" in why
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "report.json").write_text('{"rows": []}')
    assert DefaultMode(SearchSettings(), tmp_path)()[0] == "hybrid"
