"""What the routes call: the searcher, the connection pool and the two thread lanes, with
cursors signed on the way out and checked on the way in.

`ServeConfig` says what the application serves and how much work it takes on; `Backend`
holds what `create_app` builds from it for the application's lifetime.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from featuregen_assets.core.runtime.processes import usable_cpus
from featuregen_assets.core.search.default_mode import DefaultMode
from featuregen_assets.core.search.engine import Searcher, SearchQuery
from featuregen_assets.core.search.image_queries import MAX_IMAGE_PIXELS
from featuregen_assets.core.search.options import SearchSettings
from featuregen_assets.serve.cursors import CursorSigner
from featuregen_assets.serve.files import StoredImages
from featuregen_assets.serve.limits import Deadline, SearchPool, bounded_connection, checkout

T = TypeVar("T")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Per CPU this process may run on (a container's cpuset, `taskset`), not the host's.
SEARCH_THREADS = min(32, 4 * usable_cpus())
KEYWORD_THREADS = min(16, 2 * usable_cpus())
SPARE_WAIT_S = 0.05  # a hybrid query waits this long for a second connection, else goes on


@dataclass(frozen=True)
class ServeConfig:
    """What the application serves: the database, the image store, where thumbnails are
    cached, the largest upload (bytes and pixels), how to build the image embedder (None: no
    image queries), whether the query encoders run in int8, their threads per encoding and
    where their ONNX Runtime graphs are kept (`QueryModels`); the
    bounds on work (`limits`), the cursor key (None: a new one per process), what the guard
    admits (`guard.GuardSettings`: bound host, further host names, token); the sentence encoder
    of caption search, the search settings and where research reports are (the default mode)."""

    database_url: str
    images_dir: Path
    thumbs_dir: Path
    embedder_factory: Callable[[], object] | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_upload_pixels: int = MAX_IMAGE_PIXELS
    pool_size: int | None = None  # None: what the lanes can hold at once (see below)
    int8_text_encoder: bool = True
    # One intra-op thread per encoding (torch's or ONNX Runtime's) and search thread, or they
    # fight over the cores (a float32 query took 4-5x longer with two on a busy 2-CPU host).
    encoder_threads: int | None = 1
    # Threads of the two lanes (`limits.SearchPool`): keyword and hybrid text queries in
    # their own, so a flood of them never holds the threads other queries need. Each
    # keyword thread may hold two connections: threads + 2 × keyword threads ≤ pool_size.
    # A text query waits on PostgreSQL about as long as it encodes, so 4 threads per CPU:
    # on 2 CPUs 16 clients got 21 answers/s with 8 threads, 17 with 4 (serve_load.py).
    # Hybrid, the default mode, runs in the keyword lane: 2 threads per CPU (each with a side
    # connection) let the encodings, freed of the GIL, and PostgreSQL overlap; on 2 CPUs 16
    # clients got 75-79 answers/s with 4 threads, 59-67 with 2 (serve_load.py, load ~5).
    search_threads: int = SEARCH_THREADS
    keyword_threads: int = KEYWORD_THREADS
    # Requests waiting for a lane's thread; past it, 503 at once. With 4 per thread a full
    # queue waits about 4 requests' time, which bounds the p99 of the answered ones.
    queue_limit: int = 4 * SEARCH_THREADS
    deadline_s: float = 10.0
    statement_timeout_s: float = 3.0
    cursor_key: bytes | None = None
    bound_host: str = "127.0.0.1"
    allowed_hosts: Sequence[str] = ()
    token: str | None = None
    sentence_encoder: str | None = None
    search: SearchSettings = field(default_factory=SearchSettings)
    reports_dir: Path | None = None
    query_graphs_dir: Path | None = None  # None: the text encoders run on torch


class Backend:
    """The searcher, pool, lanes, stored images and cursor signer of one application."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.searcher = Searcher(
            config.embedder_factory,
            int8_text_encoder=config.int8_text_encoder,
            max_image_pixels=config.max_upload_pixels,
            sentence_encoder=config.sentence_encoder,
            settings=config.search,
            default_mode=DefaultMode(config.search, config.reports_dir),
            query_graphs_dir=config.query_graphs_dir,
            encoder_threads=config.encoder_threads,
        )
        self.images = StoredImages(config.images_dir, config.thumbs_dir)
        self.signer = CursorSigner(config.cursor_key or secrets.token_bytes(32))
        needed = config.search_threads + 2 * config.keyword_threads
        if config.pool_size is not None and config.pool_size < needed:
            raise ValueError("search_threads + 2 × keyword_threads must be ≤ pool_size")
        self.pool = ConnectionPool(
            config.database_url,
            min_size=2,
            max_size=config.pool_size or needed,
            configure=register_vector,
            kwargs={"autocommit": True},
            open=False,
        )
        bounds = (config.queue_limit, config.deadline_s, config.statement_timeout_s)
        self.lane = SearchPool(config.search_threads, *bounds)
        self.keyword_lane = SearchPool(config.keyword_threads, *bounds)

    def open(self) -> None:
        """Open the pool and load the newest text encoder."""
        self.pool.open(wait=True)
        with self.pool.connection() as conn:
            self.searcher.warm(conn)

    def close(self) -> None:
        """Let running work finish, then close the pool."""
        self.lane.shutdown()
        self.keyword_lane.shutdown()
        self.pool.close()

    async def search(self, query: SearchQuery) -> dict:
        """The answer to ``query`` (its cursor as the client sent it, signed) as a dict, its
        next cursor signed; a bad query is refused before it takes a thread."""
        query = replace(query, cursor=self.signer.verify(query.cursor))
        kind = query.kind(self.searcher.default_mode())
        lane = self.keyword_lane if kind in ("keyword", "hybrid") else self.lane
        return await lane.run(lambda deadline: self._answer(query, deadline))

    async def with_connection(self, work: Callable[[psycopg.Connection], T]) -> T:
        """``work(conn)`` on a thread of the general lane, under the request's bounds."""

        def run(deadline: Deadline) -> T:
            with bounded_connection(self.pool, deadline) as conn:
                return work(conn)

        return await self.lane.run(run)

    def _answer(self, query: SearchQuery, deadline: Deadline) -> dict:
        pool = self.pool

        @contextmanager
        def spare_connection() -> Iterator[psycopg.Connection | None]:
            """A second connection if one is free at once (never wait while holding one)."""
            try:
                conn = checkout(pool, deadline, SPARE_WAIT_S)
            except PoolTimeout:
                yield None
                return
            try:
                yield conn
            finally:
                pool.putconn(conn)

        with bounded_connection(pool, deadline) as conn:
            found = self.searcher.search(conn, query, spare_connection).as_dict()
        found["next_cursor"] = self.signer.sign(found["next_cursor"])
        return found
