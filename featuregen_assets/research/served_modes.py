"""The report's rows for the modes the search service serves (`core/search/modes.py`), so it
answers "which mode should a user of this store search with" and the service's default mode
follows it (`core/search/default_mode.py` reads these rows).

Each mode ranks the report's test gallery for each query set as the service ranks the store:
caption by the nearest stored text vector (`prompt_embeddings`, the random-weight captioner's
texts left out), image by the aligned text encoder over the stored image vectors, keyword by
PostgreSQL full text with the service's query syntax and rank, hybrid by the service's weighted
reciprocal-rank fusion of the lists there are, each cut at the service's depth (ranks within
the gallery), with the weights `hybrid_tuning` chose on the validation split (the service then
reads them from report.json). Same queries, gallery and intervals as every other row of the
report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import psycopg

from featuregen_assets.core.search.default_mode import DEFAULT_METRIC, DEFAULT_SETS, SERVED_PREFIX
from featuregen_assets.core.search.engine import HYBRID_DEPTHS
from featuregen_assets.core.search.fusion import DEFAULT_CONSTANT
from featuregen_assets.core.search.modes import CAPTION, IMAGE, KEYWORD, MODES
from featuregen_assets.core.search.options import SearchSettings
from featuregen_assets.core.store.full_text import MATCHING
from featuregen_assets.core.training.splits import Split
from featuregen_assets.research.answer_text import figure, say
from featuregen_assets.research.hybrid_tuning import TunedWeights, tune_weights
from featuregen_assets.research.measurements import Measurement, rows
from featuregen_assets.research.queries import Query, QueryMatrix
from featuregen_assets.research.text_baselines import unit
from featuregen_assets.research.text_to_image import (
    QUESTION,
    Corpus,
    queries_on_test_gallery,
    query_sets,
    seed_estimates,
    training_texts,
)

Encode = Callable[[Sequence[str]], np.ndarray]
ListScores = dict[str, np.ndarray]  # list name → (queries, gallery) scores; -inf: not listed


def served_mode_rows(
    conn: psycopg.Connection,
    corpus: Corpus,
    split: Split,
    queries: Sequence[Query],
    encode: Encode,
    sentence_model: str | None = None,
    settings: SearchSettings | None = None,
    log: Callable[[str], None] = print,
    seed: int = 0,
) -> tuple[list[Measurement], TunedWeights | None]:
    """Rows `served mode: <mode>` for every query set of the comparison (test gallery), and
    hybrid's weights as tuned on the validation gallery (None: too few lists or validation
    queries; hybrid then has the settings' weights); ``encode``: the text encoder the image
    mode uses; ``sentence_model``: caption search's (default all-MiniLM-L6-v2); a list with
    nothing stored (no text vectors) is left out, as the service leaves it out of hybrid."""
    from featuregen_assets.core.text.sentences import BUNDLED, SentenceModel

    settings = settings or SearchSettings()
    trained = set(training_texts(corpus, split)[0])
    test_ids, validation_ids = list(split.test), list(split.validation)
    try:
        sentence = SentenceModel(sentence_model or BUNDLED)
    except (OSError, ImportError, ValueError) as error:
        log(f"research: the sentence model does not load ({error}): no caption mode rows")
        sentence, texts = None, {}
    else:
        texts = _gallery_text_vectors(
            conn, sentence.key, test_ids + validation_ids, settings.random_prompts
        )
        if not texts:
            log(f"research: no text vectors of {sentence.key} stored: no caption mode rows")

    def scores_over(ids: list[str], query_set: str):
        matrix = queries_on_test_gallery(queries, query_set, ids, trained)
        if not matrix.texts:
            return None
        lists = _list_scores(conn, corpus, matrix, ids, encode, sentence, texts)
        lists[KEYWORD] = _keyword_scores(conn, matrix.texts, ids, settings.random_prompts)
        return lists, matrix

    validation = {s: found for s in DEFAULT_SETS if (found := scores_over(validation_ids, s))}
    tuned = tune_weights(validation, lambda lists, w: fused_scores(lists, list(lists), w))
    weights = tuned.weights if tuned else settings.weights()
    if tuned:
        log(f"research: hybrid's weights on the validation split: {tuned.weights}")
    out: list[Measurement] = []
    for query_set in query_sets(queries):
        found = scores_over(test_ids, query_set)
        if found is None:
            continue
        lists, matrix = found
        for mode in MODES:
            read = [name for name in mode.lists if name in lists]
            if len(mode.lists) > 1:  # hybrid: a list of weight 0 is not read
                read = [name for name in read if weights.get(name, 1.0) > 0]
            if not read:
                continue
            scores = lists[read[0]] if len(read) == 1 else fused_scores(lists, read, weights)
            estimates = seed_estimates([scores], matrix, seed)
            out += rows(QUESTION, "retrieval", query_set, SERVED_PREFIX + mode.name, estimates)
    return out, tuned


def served_mode_answer(
    measurements: Sequence[Measurement], tuned: TunedWeights | None = None
) -> list[str]:
    """One line: the served mode a user should search with, by `DEFAULT_METRIC` averaged over
    `DEFAULT_SETS` (what the service's default follows), each set's figure with its interval;
    and hybrid's weights, when ``tuned`` on the validation split."""
    served = [m for m in measurements if m.method.startswith(SERVED_PREFIX)]
    cells = {
        (m.method.removeprefix(SERVED_PREFIX), m.query_set): m
        for m in served
        if m.metric == DEFAULT_METRIC and m.query_set in DEFAULT_SETS
    }
    modes = [mode.name for mode in MODES if all((mode.name, s) in cells for s in DEFAULT_SETS)]
    if not modes:
        return []
    mean = {m: float(np.mean([cells[(m, s)].value for s in DEFAULT_SETS])) for m in modes}
    best = max(modes, key=lambda m: (mean[m], -modes.index(m)))

    def described(m: str) -> str:
        figures = ", ".join(f"{s} {figure(cells[(m, s)])}" for s in DEFAULT_SETS)
        return say("served_mode_figures", mode=m, mean=f"{mean[m]:.3f}", figures=figures)

    others = "; ".join(described(m) for m in sorted(modes, key=lambda m: -mean[m]) if m != best)
    answer = say("served_mode", best=described(best), metric=DEFAULT_METRIC, others=others)
    if tuned is not None:
        answer += " " + say(
            "served_mode_weights",
            weights=", ".join(f"{name} {w:g}" for name, w in tuned.weights.items()),
            metric=DEFAULT_METRIC,
            value=f"{tuned.value:.3f}",
            candidates=str(tuned.candidates),
            queries=str(tuned.queries),
        )
    return [answer]


def _list_scores(
    conn, corpus, matrix: QueryMatrix, test_ids, encode, sentence, texts
) -> ListScores:
    """The vector lists' (queries, gallery) scores, -inf where the list holds no image."""
    query_texts = [q.text for q in matrix.queries]
    gallery = unit(corpus.vectors[corpus.rows_of(test_ids)])
    lists: ListScores = {IMAGE: np.asarray(encode(query_texts)) @ gallery.T}
    if texts:
        lists[CAPTION] = _caption_scores(sentence.encode(query_texts), texts, test_ids)
    return lists


def _gallery_text_vectors(
    conn: psycopg.Connection, model: str, gallery: Sequence[str], random_prompts: bool
) -> dict[str, np.ndarray]:
    """image id → its stored text vectors (rows) from sentence model `model`."""
    found: dict[str, list[np.ndarray]] = {}
    for image_id, vector in conn.execute(
        "SELECT image_id, embedding FROM prompt_embeddings WHERE model = %s"
        " AND image_id = ANY(%s) AND (%s OR NOT random_weights)",
        (model, list(gallery), random_prompts),
    ):
        found.setdefault(image_id, []).append(vector.to_numpy())
    return {image_id: np.stack(vectors) for image_id, vectors in found.items()}


def _caption_scores(
    query_vectors: np.ndarray, texts: dict[str, np.ndarray], gallery: Sequence[str]
) -> np.ndarray:
    """Each gallery image's nearest text's cosine to each query (-inf: no text)."""
    scores = np.full((len(query_vectors), len(gallery)), -np.inf)
    for column, image_id in enumerate(gallery):
        if image_id in texts:
            scores[:, column] = (query_vectors @ texts[image_id].T).max(axis=1)
    return scores


def _keyword_scores(
    conn: psycopg.Connection,
    query_texts: Sequence[str],
    gallery: Sequence[str],
    random_prompts: bool,
) -> np.ndarray:
    """The service's keyword rank (websearch syntax, best-matching text's ts_rank_cd, the
    random captioner's prompts left out as the service leaves them) of each gallery image
    for each query (-inf: no match)."""
    column = {image_id: c for c, image_id in enumerate(gallery)}
    scores = np.full((len(query_texts), len(gallery)), -np.inf)
    for row, text in enumerate(query_texts):
        for image_id, score in conn.execute(
            "SELECT p.image_id, max(ts_rank_cd(p.search, q.query, 32))"
            " FROM image_prompts p, websearch_to_tsquery('english', %(text)s) AS q(query)"
            f" WHERE {MATCHING} AND p.image_id = ANY(%(gallery)s) GROUP BY p.image_id",
            {"text": text, "gallery": list(gallery), "random": random_prompts},
        ):
            scores[row, column[image_id]] = score
    return scores


def fused_scores(
    lists: ListScores,
    read: Sequence[str],
    weights: dict[str, float],
    constant: float = DEFAULT_CONSTANT,
) -> np.ndarray:
    """Weighted reciprocal-rank fusion of the lists' gallery rankings, each cut at the
    service's first hybrid depth (an image a list does not hold adds nothing)."""
    depth = HYBRID_DEPTHS[0]
    fused = np.zeros_like(lists[read[0]])
    for name in read:
        scores = lists[name]
        order = np.argsort(-scores, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
        held = np.isfinite(scores) & (ranks <= depth)
        fused += np.where(held, weights.get(name, 1.0) / (constant + ranks), 0.0)
    return fused
