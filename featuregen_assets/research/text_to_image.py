"""Question 1: can DINOv2 serve text-to-image search once a text encoder is trained into it?

Every method ranks the same test gallery (the recorded test images) for the same queries.
Two kinds of baseline: those that search the image vectors alone, as the trained encoder
does (category oracle, nearest training captions -> mean of their images' vectors), and those
that need a truthful caption stored with every gallery image (keyword search, caption
embeddings): the second kind answers "why not just search the captions?".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from featuregen_assets.core.training.metrics import chance_recall_at_k, ranks_of_positives
from featuregen_assets.core.training.splits import Split
from featuregen_assets.research.measurements import Measurement, rows
from featuregen_assets.research.queries import Query, QueryMatrix, over_gallery
from featuregen_assets.research.stats import (
    Estimate,
    bootstrap,
    chance_estimates,
    retrieval_estimates,
)
from featuregen_assets.research.text_baselines import (
    TFIDF_NEIGHBOURS,
    Tfidf,
    category_oracle,
    neighbour_mean_scores,
    unit,
)

QUESTION = "text_to_image"
Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> unit vectors


@dataclass
class Corpus:
    """What the comparison reads: every embedded image, its vector, category and texts."""

    image_ids: list[str]
    vectors: np.ndarray
    categories: dict[str, str]
    captions: dict[str, list[str]]  # the texts stored with each image (training texts)

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row indices of `ids` in `image_ids`."""
        index = {image_id: i for i, image_id in enumerate(self.image_ids)}
        return np.array([index[i] for i in ids], dtype=np.int64)


@dataclass
class TextMethods:
    """The scorers to compare. `encoders`: name -> one encode function per seed;
    `image_vectors`: name -> the vectors that encoder searches instead of the stored ones
    (one row per corpus image, e.g. CLS ⊕ mean-patch)."""

    encoders: dict[str, list[Encode]]
    image_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    sentence_encoder: Encode | None = None
    keyword: Callable[[Sequence[str], Sequence[str]], np.ndarray] | None = None


def training_texts(corpus: Corpus, split: Split) -> tuple[list[str], np.ndarray]:
    """(text, row of its image) for every text of a training image."""
    texts, image_rows = [], []
    for row in corpus.rows_of(split.train):
        for text in corpus.captions.get(corpus.image_ids[row], ()):
            texts.append(text)
            image_rows.append(row)
    return texts, np.array(image_rows, dtype=np.int64)


def _best_k(
    similarity: Callable[[Sequence[str]], np.ndarray],
    train_rows: np.ndarray,
    corpus: Corpus,
    validation: QueryMatrix,
    validation_ids: Sequence[str],
) -> int:
    """The neighbour count with the best validation recall@5 (validation only)."""
    if not validation.texts:
        return TFIDF_NEIGHBOURS[0]
    sim = similarity(validation.texts)
    gallery = corpus.vectors[corpus.rows_of(validation_ids)]
    recall = {
        k: float(
            (
                ranks_of_positives(
                    neighbour_mean_scores(sim, corpus.vectors[train_rows], gallery, k),
                    validation.positives,
                )
                <= 5
            ).mean()
        )
        for k in TFIDF_NEIGHBOURS
    }
    return max(recall, key=lambda k: (recall[k], -k))


def validation_matrix(queries: Sequence[Query], split: Split, trained: set[str]) -> QueryMatrix:
    """The template queries written for validation images, over the validation gallery
    (what every tuning choice reads)."""
    return over_gallery(
        [q for q in queries if q.query_set == "template"],
        split.validation,
        trained,
        only_from=split.validation,
    )


def queries_on_test_gallery(
    queries: Sequence[Query], query_set: str, test_ids: Sequence[str], trained: set[str]
) -> QueryMatrix:
    """One query set's queries written for test images, over the test gallery; no training
    text's bag of words is a query. "compositional": the template queries naming a held-out
    combination."""
    chosen = [
        q
        for q in queries
        if (q.query_set == query_set)
        or (query_set == "compositional" and q.query_set == "template" and q.compositional)
    ]
    return over_gallery(chosen, test_ids, trained, only_from=test_ids)


def query_sets(queries: Sequence[Query]) -> list[str]:
    """The query sets the comparison scores, "compositional" (a cut of template) last."""
    return [*sorted({q.query_set for q in queries}), "compositional"]


def dropped_as_trained(corpus: Corpus, split: Split, queries: Sequence[Query]) -> dict[str, int]:
    """Per query set, the distinct test queries left out because a training text has their
    bag of words (what a leak-free comparison cannot score)."""
    trained = set(training_texts(corpus, split)[0])
    return {
        query_set: queries_on_test_gallery(
            queries, query_set, split.test, trained
        ).dropped_as_trained
        for query_set in query_sets(queries)
    }


def compare_text_to_image(
    corpus: Corpus,
    split: Split,
    queries: Sequence[Query],
    methods: TextMethods,
    seed: int = 0,
) -> list[Measurement]:
    """Every method on every query set, test gallery; plus image -> text, within-category
    (where the gallery has several categories) and swap rows."""
    train_texts, train_rows = training_texts(corpus, split)
    trained = set(train_texts)
    test_ids = list(split.test)
    gallery_categories = [corpus.categories[i] for i in test_ids]
    validation = validation_matrix(queries, split, trained)

    scorers = _scorers(corpus, split, methods, train_texts, train_rows, validation, seed)
    out: list[Measurement] = []
    for query_set in query_sets(queries):
        matrix = queries_on_test_gallery(queries, query_set, test_ids, trained)
        if not matrix.texts:
            continue
        chance = chance_estimates(matrix.positives, matrix.matches)
        out += rows(QUESTION, "retrieval", query_set, "chance", chance)
        for name, scorer in scorers.items():
            runs = scorer(matrix.queries, test_ids)
            estimates = seed_estimates(runs, matrix, seed)
            out += rows(QUESTION, "retrieval", query_set, name, estimates, seeds=len(runs))
            if query_set == "template" and len(set(gallery_categories)) > 1:
                if name == next(iter(scorers)):
                    out += _within_category_chance(matrix, gallery_categories)
                out += _within_category(name, runs, matrix, gallery_categories, seed)
            if query_set == "template":
                out += _image_to_text(name, runs, matrix, seed)
                out += _swap_rows(name, scorer, matrix.queries, corpus, seed)
    return out


def _image_to_text(
    name: str, runs: list[np.ndarray], matrix: QueryMatrix, seed: int
) -> list[Measurement]:
    """Image -> text on the same scores: for each test image that a query is written for,
    is one of its queries in the top k of all the set's queries (recall@1/5/10)."""
    described = matrix.positives.any(axis=0)
    if not described.any():
        return []
    positives = matrix.positives.T[described]
    ranks = np.stack([ranks_of_positives(s.T[described], positives) for s in runs])
    estimates = {f"recall@{k}": bootstrap((ranks <= k).mean(0), seed=seed) for k in (1, 5, 10)}
    return rows(QUESTION, "retrieval", "template_image_to_text", name, estimates, len(runs))


Scorer = Callable[[Sequence[Query], Sequence[str]], list[np.ndarray]]


def _scorers(
    corpus: Corpus,
    split: Split,
    methods: TextMethods,
    train_texts: list[str],
    train_rows: np.ndarray,
    validation: QueryMatrix,
    seed: int,
) -> dict[str, Scorer]:
    """name -> scorer(queries, gallery ids) -> one score matrix per seed."""
    train_vectors = corpus.vectors[train_rows]

    def vectors(ids: Sequence[str]) -> np.ndarray:
        return corpus.vectors[corpus.rows_of(ids)]

    def texts(queries: Sequence[Query]) -> list[str]:
        return [q.text for q in queries]

    def neighbours(similarity: Callable[[Sequence[str]], np.ndarray]) -> tuple[str, Scorer]:
        k = _best_k(similarity, train_rows, corpus, validation, split.validation)
        return f"k={k}", lambda qs, ids: [
            neighbour_mean_scores(similarity(texts(qs)), train_vectors, vectors(ids), k)
        ]

    tfidf = Tfidf(train_texts)
    train_tfidf = tfidf.transform(train_texts)
    k, scorer = neighbours(lambda t: tfidf.transform(t) @ train_tfidf.T)
    scorers: dict[str, Scorer] = {
        "category_oracle": lambda qs, ids: [
            category_oracle([q.category for q in qs], [corpus.categories[i] for i in ids], seed)
        ],
        f"tfidf_knn ({k})": scorer,
    }
    if len({corpus.categories[i] for i in split.test}) < 2:  # one category: nothing to say
        del scorers["category_oracle"]
    if methods.sentence_encoder is not None:
        embed = methods.sentence_encoder
        train_sentences = embed(train_texts)
        k, scorer = neighbours(lambda t: embed(t) @ train_sentences.T)
        scorers[f"minilm_knn ({k})"] = scorer
        scorers["caption_minilm [needs captions]"] = lambda qs, ids: [
            _caption_embedding_scores(embed, texts(qs), [corpus.captions.get(i, []) for i in ids])
        ]
    if methods.keyword is not None:
        keyword = methods.keyword
        scorers["keyword_fts [needs captions]"] = lambda qs, ids: [keyword(texts(qs), ids)]
    for name, encodes in methods.encoders.items():
        space = methods.image_vectors.get(name, corpus.vectors)
        scorers[name] = lambda qs, ids, encodes=encodes, space=space: [
            e(texts(qs)) @ unit(space[corpus.rows_of(ids)]).T for e in encodes
        ]
    return scorers


def _caption_embedding_scores(
    embed: Encode, texts: Sequence[str], gallery_captions: Sequence[Sequence[str]]
) -> np.ndarray:
    """Query vs each gallery image's own captions (best one), by sentence-embedding cosine."""
    flat = [c for captions in gallery_captions for c in captions]
    owner = np.array([g for g, captions in enumerate(gallery_captions) for _ in captions])
    scores = np.full((len(texts), len(gallery_captions)), -2.0)
    if flat:
        sim = embed(texts) @ embed(flat).T
        for g in range(len(gallery_captions)):
            cols = np.flatnonzero(owner == g)
            if len(cols):
                scores[:, g] = sim[:, cols].max(axis=1)
    return scores


def seed_estimates(runs: list[np.ndarray], matrix: QueryMatrix, seed: int) -> dict[str, Estimate]:
    """Estimates for one run; for several seeds, intervals over queries of the per-query
    means across seeds, and each figure's sd over seeds as `<metric>_sd_seeds`."""
    per_run = [retrieval_estimates(s, matrix.positives, matrix.matches, seed) for s in runs]
    if len(runs) == 1:
        return per_run[0]
    ranks = np.stack([ranks_of_positives(s, matrix.positives) for s in runs])
    out: dict[str, Estimate] = {}
    for k in (1, 5, 10):
        out[f"recall@{k}"] = bootstrap((ranks <= k).mean(0), seed=seed)
    out["mrr"] = bootstrap((1.0 / ranks).mean(0), seed=seed)
    out["median_rank"] = bootstrap(np.median(ranks, axis=0), np.median, seed=seed)
    for metric in list(per_run[0]):
        values = np.array([r[metric].value for r in per_run])
        if metric not in out:
            low = min(r[metric].ci_low for r in per_run)
            high = max(r[metric].ci_high for r in per_run)
            out[metric] = Estimate(float(values.mean()), low, high, per_run[0][metric].n)
        sd = float(values.std(ddof=1))
        out[f"{metric}_sd_seeds"] = Estimate(sd, sd, sd, len(runs))
    return out


def _within_category(
    name: str,
    runs: list[np.ndarray],
    matrix: QueryMatrix,
    gallery_categories: Sequence[str],
    seed: int,
) -> list[Measurement]:
    """Recall with the gallery cut to the query's own category (what the category cannot
    explain); queries whose positives lie outside it are left out."""
    categories = np.array(gallery_categories, dtype=object)
    ranks = []
    for scores in runs:
        per_query = []
        for row, q in enumerate(matrix.queries):
            same = categories == q.category
            positives = matrix.positives[row] & same
            if positives.any():
                per_query.append(
                    ranks_of_positives(scores[row : row + 1, same], positives[None, same])[0]
                )
        ranks.append(per_query)
    ranks = np.array(ranks, dtype=np.float64)
    estimates = {f"recall@{k}": bootstrap((ranks <= k).mean(0), seed=seed) for k in (1, 5)}
    estimates["mrr"] = bootstrap((1.0 / ranks).mean(0), seed=seed)
    return rows(QUESTION, "retrieval", "template_within_category", name, estimates, len(runs))


def _within_category_chance(
    matrix: QueryMatrix, gallery_categories: Sequence[str]
) -> list[Measurement]:
    """Exact chance of the within-category rows (a random order inside the category)."""
    categories = np.array(gallery_categories, dtype=object)
    cut = [
        (matrix.positives[row] & (categories == q.category))[categories == q.category]
        for row, q in enumerate(matrix.queries)
    ]
    cut = [c for c in cut if c.any()]
    exact = {
        f"recall@{k}": float(np.mean([chance_recall_at_k(len(c), int(c.sum()), k) for c in cut]))
        for k in (1, 5)
    }
    return rows(
        QUESTION,
        "retrieval",
        "template_within_category",
        "chance",
        {k: Estimate(v, v, v, len(cut)) for k, v in exact.items()},
    )


def _swap_rows(
    name: str, scorer: Scorer, queries: Sequence[Query], corpus: Corpus, seed: int
) -> list[Measurement]:
    """Attribute-swap hard negatives: how often a test query's own image outscores its twin
    (same backdrop and places, colours exchanged; chance 0.5, ties count half). A grouped
    split keeps the twin on the query's side (same words); each pair is scored on its own."""
    pairs = [q for q in queries if q.hard_negative in corpus.categories and q.image_id]
    if not pairs:
        return []
    ids = sorted({i for q in pairs for i in (q.image_id, q.hard_negative)})
    column = {image_id: c for c, image_id in enumerate(ids)}
    own = [column[q.image_id] for q in pairs]
    twin = [column[q.hard_negative] for q in pairs]
    rows_ = np.arange(len(pairs))
    margins = np.array([s[rows_, own] - s[rows_, twin] for s in scorer(pairs, ids)])
    outcome = ((margins > 0) + 0.5 * (margins == 0)).mean(0)
    return rows(
        QUESTION,
        "attribute_swap",
        "template_swap_pairs",
        name,
        {"pairwise_accuracy": bootstrap(outcome, seed=seed)},
        len(margins),
    )
