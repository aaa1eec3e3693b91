"""What the stored vectors hold of the scene truth: attribute probes and truth read-outs."""

import numpy as np
import pytest
from PIL import Image

from featuregen_assets.core.training.alignment import AlignmentConfig
from featuregen_assets.core.training.splits import three_way_split
from featuregen_assets.research.answers import content_answers, text_answers
from featuregen_assets.research.learned_ceiling import CEILING, learned_ceiling
from featuregen_assets.research.measurements import Measurement
from featuregen_assets.research.queries import Query
from featuregen_assets.research.stats import bootstrap
from featuregen_assets.research.text_to_image import Corpus
from featuregen_assets.research.vector_content import (
    CONTROL,
    EMPTY,
    KNOWS_TRUTH,
    LINEAR,
    MLP,
    READOUT,
    THUMBNAIL,
    VECTOR,
    TruthCoding,
    attribute_probes,
    balanced_accuracy,
    probe_method,
    truth_readouts,
)

PLACES = ("top left", "bottom right")
COLOURS = ("red", "green", "blue")
SHAPES = ("circle", "square", "star")
SIZES = ("small", "large")


def _records(n: int, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        objects = [
            {
                "position": place,
                "colour": str(rng.choice(COLOURS)),
                "shape": str(rng.choice(SHAPES)),
                "size": str(rng.choice(SIZES)),
            }
            for place in PLACES
            if rng.random() < 0.7
        ]
        out[f"img{i:03d}"] = {"category": ("cafe", "bank")[i % 2], "objects": objects}
    return out


def _corpus(records: dict[str, dict], vectors: np.ndarray) -> Corpus:
    ids = list(records)
    captions = {
        i: [
            ", ".join(
                f"a {o['size']} {o['colour']} {o['shape']} at the {o['position']}"
                for o in r["objects"]
            )
            + f" in a {r['category']} ({i})"
        ]
        for i, r in records.items()
    }
    return Corpus(ids, vectors, {i: r["category"] for i, r in records.items()}, captions)


def _colour_only_vectors(records: dict[str, dict], seed: int = 0) -> np.ndarray:
    """Vectors that hold the colour at each place (and the category), nothing of shape or size."""
    rng = np.random.default_rng(seed)
    basis = {(p, c): rng.normal(size=32) for p in PLACES for c in COLOURS}
    category = {c: rng.normal(size=32) for c in ("cafe", "bank")}
    rows = []
    for r in records.values():
        v = category[r["category"]] + 0.3 * rng.normal(size=32)
        for o in r["objects"]:
            v = v + 2 * basis[(o["position"], o["colour"])]
        rows.append(v)
    return np.array(rows)


def _thumbnails(tmp_path, records: dict[str, dict]) -> list[str]:
    paths = []
    rgb = {"red": (220, 30, 30), "green": (30, 180, 50), "blue": (30, 60, 220)}
    for image_id, r in records.items():
        image = Image.new("RGB", (16, 16), (128, 128, 128))
        for o in r["objects"]:
            x = 0 if o["position"] == "top left" else 8
            image.paste(rgb[o["colour"]], (x, x, x + 8, x + 8))
        path = tmp_path / f"{image_id}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def test_balanced_accuracy_weighs_each_class_alike():
    truth = np.array([0, 0, 0, 0, 1, EMPTY])
    assert balanced_accuracy(truth, np.zeros(6, dtype=int)) == 0.5  # majority: chance
    assert balanced_accuracy(truth, np.r_[truth[:-1], 0]) == 1.0  # empty places not scored


def test_truth_coding_labels_each_place_and_codes_the_whole_truth():
    records = {
        "a": {
            "category": "bank",
            "objects": [
                {"position": "top left", "colour": "red", "shape": "star", "size": "small"},
            ],
        },
        "b": {
            "category": "cafe",
            "objects": [
                {"position": "bottom right", "colour": "blue", "shape": "circle", "size": "large"},
            ],
        },
    }
    coding = TruthCoding(records.values())
    assert coding.labels(records["a"], "object").tolist() == [0, 1]  # places sorted
    assert coding.labels(records["a"], "colour").tolist() == [EMPTY, 1]  # "blue", "red"
    assert coding.classes("colour") == 2 and coding.classes("category") == 2
    assert coding.code(records["a"]).sum() == 1 + 3  # category + colour, shape, size


def test_probes_tell_an_attribute_the_vectors_hold_from_one_they_lack(tmp_path):
    records = _records(400)
    corpus = _corpus(records, _colour_only_vectors(records))
    split = three_way_split(corpus.image_ids, 0.3, 0.2)
    rows = attribute_probes(corpus, _thumbnails(tmp_path, records), split, records)
    by = {(m.method, m.metric): m for m in rows}
    vector = probe_method(LINEAR, VECTOR)
    assert by[(vector, "colour_at_place")].value > 0.9
    assert by[(vector, "category")].value > 0.9
    assert by[(vector, "shape_at_place")].value < by[("chance", "shape_at_place")].value + 0.15
    assert by[(vector, "size_at_place")].value < by[("chance", "size_at_place")].value + 0.15
    assert by[(probe_method(LINEAR, CONTROL), "shape_at_place")].value > 0.9
    # the category's control reads the objects alone, which here say nothing of it
    assert by[(probe_method(LINEAR, CONTROL), "category")].value < 0.7
    assert by[(probe_method(LINEAR, THUMBNAIL), "colour_at_place")].value > 0.9
    assert (probe_method(MLP, VECTOR), "shape_at_place") in by
    assert {m.n for m in rows} == {len(split.test)}
    answer = content_answers(rows)[0]
    assert "the control reaches its ceiling" in answer
    assert "hold little of the shape at place, size at place" in answer


def _template_queries(corpus: Corpus) -> list[Query]:
    return [
        Query("template", corpus.captions[i][0], frozenset({i}), i, corpus.categories[i])
        for i in corpus.image_ids
    ]


def test_truth_readout_finds_images_whose_vectors_hold_the_truth_and_not_random_ones():
    records = _records(300, seed=1)
    coding = TruthCoding(records.values())
    rng = np.random.default_rng(2)
    mixing = rng.normal(size=(len(coding.code(next(iter(records.values())))), 48))
    held = np.stack([coding.code(r) @ mixing for r in records.values()])
    for vectors, low, high in (
        (held + 0.05 * rng.normal(size=held.shape), 0.5, 1.0),
        (rng.normal(size=held.shape), 0.0, 0.2),
    ):
        corpus = _corpus(records, vectors)
        split = three_way_split(corpus.image_ids, 0.3, 0.2)
        rows = truth_readouts(corpus, split, _template_queries(corpus), records)
        recall = next(m for m in rows if m.method == READOUT and m.metric == "recall@5")
        assert low <= recall.value <= high
        assert recall.query_set == "template" and recall.n == len(split.test)


def test_the_learned_ceiling_finds_what_the_vectors_hold_and_nothing_in_noise():
    records = _records(300, seed=1)
    coding = TruthCoding(records.values())
    rng = np.random.default_rng(2)
    mixing = rng.normal(size=(len(coding.code(next(iter(records.values())))), 48))
    held = np.stack([np.tanh(coding.code(r) @ mixing) for r in records.values()])
    config = AlignmentConfig(device="cpu", epochs=40, batch_size=32, eval_every=5, lr=3e-3)
    found = {}
    for name, vectors in (
        ("held", held + 0.05 * rng.normal(size=held.shape)),
        ("noise", rng.normal(size=held.shape)),
    ):
        corpus = _corpus(records, vectors)
        split = three_way_split(corpus.image_ids, 0.3, 0.2)
        rows = learned_ceiling(corpus, split, _template_queries(corpus), records, config, seeds=2)
        recall = next(m for m in rows if m.method == CEILING and m.metric == "recall@5")
        assert recall.seeds == 2 and recall.n == len(split.test) and KNOWS_TRUTH in recall.method
        found[name] = recall.value
    assert found["held"] > 0.6 and found["noise"] < 0.25


def test_truth_readouts_need_every_query_image_recorded():
    records = _records(120)
    corpus = _corpus(records, _colour_only_vectors(records))
    split = three_way_split(corpus.image_ids, 0.3, 0.2)
    partial = {i: r for i, r in records.items() if i not in split.validation[:1]}
    assert truth_readouts(corpus, split, _template_queries(corpus), partial) == []


def _recall(method: str, value: float, half: float = 0.02) -> Measurement:
    found = np.zeros(100)
    found[: round(value * 100)] = 1  # the same queries found first by every method
    return Measurement(
        "text_to_image",
        "retrieval",
        "template",
        method,
        "recall@5",
        value,
        value - half,
        value + half,
        100,
        of_units=bootstrap(found).of_units,
    )


@pytest.mark.parametrize(
    ("encoder", "learned", "verdict"),
    [
        (0.10, 0.0, "weak estimators, not a ceiling, so that bounds nothing"),
        (0.30, 0.0, "weak estimators, not a ceiling, so that bounds nothing"),
        (0.02, 0.0, "the text side limits it"),
        (0.10, 0.11, "(a learned ceiling included), so the vectors limit the search"),
        (0.10, 0.30, "the text side limits it"),
    ],
)
def test_the_answer_says_which_side_limits_the_search(encoder, learned, verdict):
    rows = [
        _recall("tfidf_knn (k=1)", 0.05),
        _recall(READOUT, 0.11),
        _recall("trained_encoder", encoder),
    ]
    if learned:
        rows.append(_recall(CEILING, learned))
    assert verdict in content_answers(rows)[0]
    # a read-out that knows the truth is never "the best baseline" a user has
    assert "tfidf_knn (k=1) 0.050" in next(a for a in text_answers(rows) if "template" in a)


def test_no_records_no_content_answers():
    assert content_answers([_recall("trained_encoder", 0.1)]) == []
