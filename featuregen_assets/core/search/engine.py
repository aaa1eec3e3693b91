"""One search call: validate the query, get its vectors, rank its lists, page, count, time it."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psycopg

from featuregen_assets.core.search import bounds
from featuregen_assets.core.search import lists as ranked_lists
from featuregen_assets.core.search.beside import ListsBeside, lists_beside
from featuregen_assets.core.search.counts import Count, TotalCounter
from featuregen_assets.core.search.cursor import BadCursor, Cursor, fingerprint
from featuregen_assets.core.search.default_mode import DefaultMode
from featuregen_assets.core.search.errors import BadQuery, NotAnImage, NotFound, Unavailable
from featuregen_assets.core.search.expiring import Expiring
from featuregen_assets.core.search.fusion import DEFAULT_CONSTANT
from featuregen_assets.core.search.hits import Hit, category_counts, load_hits
from featuregen_assets.core.search.image_queries import (
    MAX_IMAGE_PIXELS,
    checked_vector,
    like_vector,
    upload_vector,
)
from featuregen_assets.core.search.lists import Ranked, Why
from featuregen_assets.core.search.modes import (
    CAPTION,
    FALLBACK_DEFAULT,
    IMAGE,
    KEYWORD,
    mode_named,
)
from featuregen_assets.core.search.options import SearchSettings
from featuregen_assets.core.search.plan import Plan, Timings
from featuregen_assets.core.search.query_models import TEXT_ENCODER, QueryModels
from featuregen_assets.core.store.full_text import has_search_terms
from featuregen_assets.core.store.registry import RegisteredModel, most_embedded_model

MAX_K = 1000
MAX_RESULTS = 1000  # how far a query pages by cursor
FACET_DEPTH = 50  # facets count the categories of the query's best this many, unfiltered
HYBRID_DEPTHS = (50, 100, MAX_RESULTS)  # each list's depth: the first that covers the page
SPACE_CACHE_S = 30.0  # which model embedded most changes only when a run stores more
FACETS_KEPT_S, FACETS_KEPT = 30.0, 1024  # a query's facets, for its category pages after
NON_TEXT = ("like", "upload", "vector")  # query kinds that are not words
NO_SEARCH_TERMS = (
    "keyword search skips common words (the, a, or …) and punctuation, and the query has"
    " nothing else: give other words, or search in caption or hybrid mode"
)
__all__ = ["BadQuery", "NotAnImage", "NotFound", "Unavailable", "TEXT_ENCODER"]

# A second connection for work beside the query's own, or None when none is free right now.
SpareConnection = Callable[[], AbstractContextManager[psycopg.Connection | None]]


@dataclass(frozen=True)
class SearchQuery:
    """What to look for: exactly one of ``text`` (with ``mode``: a `modes.MODES` name, None
    for the searcher's default), ``like`` (a stored image's id), ``image`` (image file bytes)
    or ``vector``; optionally one category; ``k`` hits per page; ``cursor`` from the previous
    page; ``rrf_k``, the hybrid fusion constant; ``version``, a registered text encoder
    version (else the served one)."""

    text: str | None = None
    mode: str | None = None
    like: str | None = None
    image: bytes | None = None
    vector: Sequence[float] | None = None
    category: str | None = None
    k: int = 20
    cursor: str | None = None
    rrf_k: float = DEFAULT_CONSTANT
    version: str | None = None

    def kind(self, default_mode: str = FALLBACK_DEFAULT) -> str:
        """caption | image | keyword | hybrid (a text query's mode) or like | upload |
        vector; raises BadQuery when malformed."""
        given = [
            name
            for name, value in (
                ("text", self.text),
                ("like", self.like),
                ("upload", self.image),
                ("vector", self.vector),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise BadQuery("give one of: a text query, like=<image id>, an image, a vector")
        try:
            bounds.check_strings(
                **{"the query": self.text},
                like=self.like,
                category=self.category,
                cursor=self.cursor,
                version=self.version,
            )
        except ValueError as error:
            raise BadQuery(str(error)) from None
        if not 1 <= self.k <= MAX_K:
            raise BadQuery(f"k must be 1 to {MAX_K}, not {self.k}")
        if not (math.isfinite(self.rrf_k) and self.rrf_k >= 0):
            raise BadQuery(f"rrf_k must be a number ≥ 0, not {self.rrf_k}")
        if given[0] != "text":
            return given[0]
        if not self.text.strip():
            raise BadQuery("the query is empty: type some words")
        try:
            mode = mode_named(self.mode or default_mode).name
        except ValueError as error:
            raise BadQuery(str(error)) from error
        try:
            bounds.check_text(self.text, keywords=KEYWORD in mode_named(mode).lists)
        except bounds.QueryTooLarge as error:
            raise BadQuery(str(error)) from None
        return mode


@dataclass
class SearchAnswer:
    """A page of hits with what the API promises around it."""

    mode: str
    score_kind: str  # cosine | keyword (ts_rank_cd) | rrf (reciprocal-rank fusion)
    hits: list[Hit]
    next_cursor: str | None
    facets: dict[str, int]
    timing_ms: dict[str, float]  # hybrid's parts overlap (`beside`): they may sum past total
    model: dict[str, str | None]  # the versions used: embedding, text encoder, sentence model
    total: int  # how many images the query ranks in its scope (`counts.TotalCounter`)
    category: str | None = None

    def as_dict(self) -> dict:
        """The answer as a JSON-ready dict."""
        return asdict(self)


class Searcher:
    """Answers `SearchQuery`s over one engine for every mode. Its query encoders
    (`QueryModels`: the served or asked-for aligned text encoder, the sentence encoder, the
    image embedder) load on first use. Safe to share between threads.

    Given a spare connection, hybrid queries rank their keyword and caption lists on it
    (`beside`) while the query is encoded for the image list and that list ranked, so a
    hybrid query costs about the longer of the two paths, not their sum. With
    ``int8_text_encoder`` the query encoders' matrix products run with int8 weights (about
    3× faster on a CPU); with ``query_graphs_dir`` the text encoders run as ONNX Runtime
    graphs, ``encoder_threads`` threads each (`QueryModels`)."""

    def __init__(
        self,
        embedder_factory: Callable[[], object] | None = None,
        int8_text_encoder: bool = False,
        sentence_encoder: str | None = None,
        settings: SearchSettings | None = None,
        default_mode: DefaultMode | None = None,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        query_graphs_dir: Path | None = None,
        encoder_threads: int | None = None,
    ) -> None:
        self.settings = settings or SearchSettings()
        self._max_pixels = max_image_pixels
        self.models = QueryModels(
            embedder_factory, int8_text_encoder, sentence_encoder, query_graphs_dir, encoder_threads
        )
        self.default_choice = default_mode or DefaultMode(self.settings)
        self._totals = TotalCounter(self.settings.random_prompts)
        self._spaces: Expiring[str | None] = Expiring(SPACE_CACHE_S)
        self._facets: Expiring[dict[str, int]] = Expiring(FACETS_KEPT_S, FACETS_KEPT)
        self._beside = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keyword-lists")

    def default_mode(self) -> str:
        """The mode a text query without one gets (`default_choice()` also says why)."""
        return mode_named(self.default_choice()[0]).name

    def hybrid_weights(self) -> dict[str, float]:
        """Each list's weight in hybrid's fusion (`DefaultMode.hybrid_weights` says why)."""
        return self.default_choice.hybrid_weights()[0]

    def text_encoder(self, record: RegisteredModel):
        """The loaded encoder of ``record`` (see `QueryModels.text_encoder`)."""
        return self.models.text_encoder(record)

    def warm(self, conn: psycopg.Connection) -> None:
        """Load the served text encoder and the sentence encoder now, where there are any."""
        self.models.warm(conn)

    def search(
        self,
        conn: psycopg.Connection,
        query: SearchQuery,
        spare: SpareConnection | None = None,
    ) -> SearchAnswer:
        """One page of hits for ``query``, its facets, total, next cursor and timings;
        ``spare`` gives a hybrid query a second connection for the lists it ranks beside."""
        started = time.perf_counter()
        kind = query.kind(self.default_mode())
        timings = Timings()
        plan = self._plan(conn, query, kind, timings)
        if query.cursor is None:  # a first page: its facets are kept under this, or taken
            plan.facets_key = _identity(query, plan, None)
            if query.category is not None:
                plan.facets = self._facets.peek(plan.facets_key)
                plan.keyword_pages = self._shared_keyword_lists(query, plan)
        slots = _first_page_slots(query, plan.facets is not None)
        names = lists_beside(plan.lists, slots)
        scope = (plan.lists, plan.space, plan.sentence_model, query.category, query.text)
        if not names or spare is None:  # a keyword query counts its matches on the spare
            with self._totals.beside(self._beside, spare, *scope) as count:
                return self._search(conn, query, plan, timings, started, None, count)
        count = self._totals.counter(*scope)
        with spare() as side:
            if side is None:
                return self._search(conn, query, plan, timings, started, None, count)

            def rank_one(side_conn, name: str, depth: int, category: str | None) -> Ranked:
                return _one_list(side_conn, query, plan, name, depth, category, None, 0, timings)

            encoding = None
            if CAPTION in names:  # on a third thread, beside the image list's encoding
                encoding = self._beside.submit(plan.encode_caption_query, query.text, timings)
            early = ListsBeside(names, slots, encoding.result if encoding else lambda: None)
            early.start(self._beside, side, rank_one)
            try:
                return self._search(conn, query, plan, timings, started, early, count)
            finally:  # the side connection goes back only when it is idle
                wait([early.future] + ([encoding] if encoding else []))

    def _plan(
        self, conn: psycopg.Connection, query: SearchQuery, kind: str, timings: Timings
    ) -> Plan:
        """The lists ``kind`` reads (hybrid: every one available with a weight above 0) and
        their query encoders (a non-text query's vector itself; a text query's are encoded by
        `Plan.encode_*`)."""
        models = self.models
        if kind in NON_TEXT:
            vector, space = self._non_text_vector(conn, query, kind, timings)
            return Plan(kind, (IMAGE,), vector, space)
        wanted = mode_named(kind).lists
        weights = self.hybrid_weights() if len(wanted) > 1 else {}
        wanted = tuple(name for name in wanted if weights.get(name, 1.0) > 0)
        if not wanted:
            raise Unavailable("every hybrid list has weight 0: see FEATUREGEN_HYBRID_WEIGHTS")
        asked = IMAGE in wanted or query.version is not None  # a mistyped version: refused
        record = models.text_encoder_record(conn, query.version) if asked else None
        if query.version is not None and record is None:
            raise BadQuery(f"no text encoder version {query.version!r} is registered")
        record = record if IMAGE in wanted else None
        sentence = models.sentence(conn) if CAPTION in wanted else None
        if kind == IMAGE and record is None:
            raise Unavailable(
                "no aligned text encoder is registered: run `featuregen demo`, or"
                " `featuregen train text-encoder` (caption and keyword modes work without one)"
            )
        if kind == CAPTION and sentence is None:
            raise Unavailable(models.sentence_problem(conn))
        plan = Plan(kind, tuple(name for name in wanted if name != IMAGE or record))
        plan.weights = weights
        plan.random_prompts = self.settings.random_prompts
        plan.lists = tuple(n for n in plan.lists if n != CAPTION or sentence is not None)
        plan.space = record.embedding_model if record else self._most_embedded(conn)
        if record is not None:
            plan.record = record
            plan.text_encoder = models.text_encoder(record)
        if sentence is not None:
            plan.sentence = sentence
            plan.sentence_model = sentence.key
        return plan

    def _shared_keyword_lists(self, query: SearchQuery, plan: Plan):
        """A filtered first page's keyword lists, ranked in one pass (`lists.KeywordPages`):
        the facets' unfiltered list (unless its facets are kept) and the category's page."""
        if KEYWORD not in plan.lists:
            return None
        scopes = _first_page_slots(query, plan.facets is not None, hybrid=len(plan.lists) > 1)
        return ranked_lists.KeywordPages(query.text, scopes, self.settings.random_prompts)

    def _most_embedded(self, conn: psycopg.Connection) -> str | None:
        """`most_embedded_model`, counted at most every `SPACE_CACHE_S` (a GROUP BY over
        every stored vector: ~25 ms at 100,000)."""
        return self._spaces.get("most", lambda: most_embedded_model(conn))

    def _non_text_vector(
        self, conn: psycopg.Connection, query: SearchQuery, kind: str, timings: Timings
    ) -> tuple[np.ndarray, str]:
        """The image-space vector of a like, upload or vector query, and its space."""
        if kind == "upload":
            return upload_vector(conn, self.models, query.image, self._max_pixels, timings)
        record = self.models.text_encoder_record(conn, None)
        space = record.embedding_model if record else self._most_embedded(conn)
        if space is None:
            raise Unavailable("no image vectors are stored yet: run `featuregen run` first")
        if kind == "like":
            with timings.measure("vector"):
                return like_vector(conn, query.like, space), space
        return checked_vector(conn, query.vector, space), space

    def _search(
        self,
        conn: psycopg.Connection,
        query: SearchQuery,
        plan: Plan,
        timings: Timings,
        started: float,
        early: ListsBeside | None,
        count: Count,
    ) -> SearchAnswer:
        """The answer, the query vectors encoded here unless ``early`` encodes them beside,
        its total as ``count`` gives it."""
        if query.text is not None:
            plan.encode_image_query(query.text, timings)
            if early is None or CAPTION not in early.names:
                plan.encode_caption_query(query.text, timings)
            # else encoded beside; `ListsBeside` waits for it before a caption list
        identity = (
            plan.facets_key  # an unfiltered first page's identity is its facets' key
            if query.category is None and plan.facets_key is not None
            else _identity(query, plan, query.category)
        )
        try:
            cursor = Cursor.decode(query.cursor, identity) if query.cursor else None
        except BadCursor as error:
            raise BadQuery(str(error)) from error
        position = cursor.position if cursor else 0
        after = (cursor.key, cursor.image_id) if cursor else None
        page_size = min(query.k, MAX_RESULTS - position)

        def rank(limit: int, category: str | None, after, position: int):
            if len(plan.lists) > 1:
                return self._hybrid(
                    conn, query, plan, limit, category, after, position, timings, early
                )
            [name] = plan.lists
            ranked = _one_list(conn, query, plan, name, limit, category, after, position, timings)
            return ranked, ranked_lists.single(name, ranked, position + 1)

        # The page before the facets' lists (the side connection ranks those meanwhile: see
        # `_first_page_slots`), unless an unfiltered first page is the facets' list's head.
        # A category's first page right after the same query without it keeps that one's facets.
        known = plan.facets is not None
        from_best = query.category is None and cursor is None and page_size < FACET_DEPTH
        page, why = [], {}
        if page_size > 0 and not from_best:
            page, why = rank(page_size + 1, query.category, after, position)
        best, best_why = ([], {}) if known else rank(FACET_DEPTH, None, None, 0)
        if page_size > 0 and from_best:
            page, why = best[: page_size + 1], best_why
        more = len(page) > page_size and position + page_size < MAX_RESULTS
        page = page[:page_size]
        with timings.measure("metadata"):
            hits = load_hits(
                conn,
                [(image_id, score) for image_id, score, _ in page],
                first_rank=position + 1,
                category=query.category,
                query=plan.image_vector if IMAGE in plan.lists else None,
                embedding_model=plan.space,
                why=why,
                cosine_is_score=plan.lists == (CAPTION,),
            )
            facets = plan.facets if known else category_counts(conn, [i for i, _, _ in best])
            total = count(conn)
        if plan.facets_key is not None and not known:
            self._facets.put(plan.facets_key, facets)
        next_cursor = None
        if more and page:
            last_id, _, last_key = page[-1]
            next_cursor = Cursor(position + len(page), last_key, last_id, identity).encode()
        timing_ms = {name: round(ms, 2) for name, ms in timings.ms.items()}
        timing_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
        return SearchAnswer(
            mode={"upload": "image"}.get(plan.kind, plan.kind),
            score_kind="rrf" if len(plan.lists) > 1 else _SCORE_KINDS[plan.lists[0]],
            hits=hits,
            next_cursor=next_cursor,
            facets=facets,
            timing_ms=timing_ms,
            model={
                "embedding_model": plan.space,
                "text_encoder_version": plan.record.version if plan.record else None,
                "sentence_model": plan.sentence_model,
            },
            total=total,
            category=query.category,
        )

    def _hybrid(
        self, conn, query, plan: Plan, limit, category, after, position, timings, early
    ) -> tuple[Ranked, dict[str, list[Why]]]:
        """Fuse the plan's lists, each `_hybrid_depth` deep; a list shared with the side
        connection (``early``) is ranked here only if the side has not claimed it: the lists
        only this thread ranks go first, then the caption list, then the keyword list."""
        depth = _hybrid_depth(position, limit)

        def rank_here(name: str) -> Callable[[], Ranked]:
            return lambda: _one_list(conn, query, plan, name, depth, category, None, 0, timings)

        shared = [n for n in plan.lists if early is not None and early.has(n, depth, category)]
        if early is not None and CAPTION in plan.lists and CAPTION not in shared:
            early.prepared()  # a cursor page's caption list: its query encoded beside
        found = {name: rank_here(name)() for name in plan.lists if name not in shared}
        for name in sorted(shared, key=lambda name: name == KEYWORD):
            found[name] = early.take(name, depth, category, rank_here(name))
        return ranked_lists.fuse(
            {name: found[name] for name in plan.lists}, plan.weights, query.rrf_k, limit, after
        )


_SCORE_KINDS = {IMAGE: "cosine", CAPTION: "cosine", KEYWORD: "keyword"}


def _one_list(conn, query, plan: Plan, name, limit, category, after, position, timings) -> Ranked:
    """One of the plan's ranked lists, ``limit`` long, after a cursor's ``after``."""
    if name == KEYWORD:
        return _keyword(conn, query, plan, limit, category, after, timings)
    with timings.measure("vector"):
        if name == IMAGE:
            return ranked_lists.by_image_vectors(
                conn, plan.image_vector, plan.space, limit, category, after
            )
        return ranked_lists.by_caption_vectors(
            conn,
            plan.caption_vector,
            plan.sentence_model,
            limit,
            category,
            after,
            position,
            plan.random_prompts,
        )


def _keyword(conn, query, plan: Plan, limit, category, after, timings: Timings) -> Ranked:
    """The keyword list: a filtered first page's from `Plan.keyword_pages` (its lists ranked
    in one pass), else ranked alone."""
    with timings.measure("keyword"):
        pages = plan.keyword_pages if after is None else None
        found = pages.get(conn, limit, category) if pages else None
        if found is None:
            found = ranked_lists.by_keywords(
                conn, query.text, limit, category, after, plan.random_prompts
            )
    if not found and plan.lists == (KEYWORD,) and not has_search_terms(conn, query.text):
        raise BadQuery(NO_SEARCH_TERMS)  # else "0 images ranked" would not say why
    return found


def _hybrid_depth(position: int, limit: int) -> int:
    """How deep each list of a hybrid page goes: the first of `HYBRID_DEPTHS` that covers it
    (a page in the same depth sees the same lists, so the same order)."""
    return next(d for d in HYBRID_DEPTHS if position + limit <= d or d == HYBRID_DEPTHS[-1])


def _first_page_slots(
    query: SearchQuery, facets_known: bool = False, hybrid: bool = True
) -> tuple[tuple[int, str | None], ...]:
    """The (depth, category) of the lists a query's first page reads, in the order its own
    thread ranks them: with a category the filtered ones its page comes from (a hybrid
    page's `_hybrid_depth` deep, a single list's one past the page), then the unfiltered ones
    its facets (and unfiltered page) come from, unless its facets are kept. The side
    connection goes down the same order, so it takes the facets' caption list while the
    query's thread ranks the category's."""
    if query.category is not None and query.cursor is None:
        rows = min(query.k, MAX_RESULTS) + 1
        page = (_hybrid_depth(0, rows) if hybrid else rows, query.category)
        return (page,) if facets_known else (page, (FACET_DEPTH, None))
    return ((FACET_DEPTH, None),)


def _identity(query: SearchQuery, plan: Plan, category: str | None) -> str:
    """What a cursor is bound to (`cursor.fingerprint`): the query, its lists, models and
    weights, and ``category``."""
    return fingerprint(
        plan.kind,
        plan.lists,
        query.text,
        query.like,
        hashlib.sha256(query.image).digest() if query.image else None,
        None if query.vector is None else np.asarray(query.vector, np.float32).tobytes(),
        category,
        (query.rrf_k, sorted(plan.weights.items())) if len(plan.lists) > 1 else None,
        plan.space,
        plan.record.version if plan.record else None,
        plan.sentence_model,
    )
