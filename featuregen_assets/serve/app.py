"""The ASGI application: the search API, stored images and thumbnails by id, and the page."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import psycopg
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import BaseModel, Field

from featuregen_assets.core.search.engine import (
    MAX_IMAGE_PIXELS,
    MAX_K,
    BadQuery,
    NotAnImage,
    NotFound,
    Searcher,
    SearchQuery,
    Unavailable,
)
from featuregen_assets.core.search.fusion import DEFAULT_CONSTANT
from featuregen_assets.serve.cursors import CursorSigner
from featuregen_assets.serve.files import StoredImages
from featuregen_assets.serve.guard import Guard, GuardSettings
from featuregen_assets.serve.limits import (
    RETRY_AFTER_S,
    Deadline,
    Overloaded,
    SearchPool,
    TooSlow,
    bounded_connection,
    checkout,
)

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_VECTOR_LENGTH = 8192
SPARE_WAIT_S = 0.05  # a hybrid query waits this long for a second connection, else goes on
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}  # content-addressed files


@dataclass(frozen=True)
class ServeConfig:
    """What the application serves: the database, the image store, where thumbnails are
    cached, the largest upload (bytes and pixels), how to build the image embedder (None: no
    image queries), whether the text encoder runs in int8, torch's threads per request; the
    bounds on work (`limits`), the cursor key (None: a new one per process), and what the
    guard admits (`guard.GuardSettings`: bound host, further host names, token)."""

    database_url: str
    images_dir: Path
    thumbs_dir: Path
    embedder_factory: Callable[[], object] | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_upload_pixels: int = MAX_IMAGE_PIXELS
    pool_size: int | None = None  # None: what the lanes can hold at once (see below)
    int8_text_encoder: bool = True
    # Requests run at once in uvicorn's thread pool: one intra-op thread each, or they fight
    # over the cores (a float32 query took 4-5x longer with two threads on a busy 2-CPU host).
    torch_threads: int | None = 1
    # Threads of the two lanes (`limits.SearchPool`): keyword and hybrid text queries in
    # their own, so a flood of them never holds the threads other queries need. Each
    # keyword thread may hold two connections: threads + 2 × keyword threads ≤ pool_size.
    search_threads: int = min(32, 2 * (os.cpu_count() or 1))
    keyword_threads: int = 2
    queue_limit: int = 64  # requests waiting for a lane's thread; past it, 503
    deadline_s: float = 10.0
    statement_timeout_s: float = 3.0
    cursor_key: bytes | None = None
    bound_host: str = "127.0.0.1"
    allowed_hosts: Sequence[str] = ()
    token: str | None = None


class TooLarge(ValueError):
    """An upload over the size limit (HTTP 413)."""


class VectorQuery(BaseModel):
    """A raw query vector of the store's dimension (normalised here; cosine ranks)."""

    vector: list[float] = Field(max_length=MAX_VECTOR_LENGTH)
    category: str | None = None
    k: int = Field(default=20, ge=1, le=MAX_K)
    cursor: str | None = None


def create_app(config: ServeConfig) -> FastAPI:
    """The application; its connection pool opens and the text encoder loads at start-up."""
    searcher = Searcher(
        config.embedder_factory,
        int8_text_encoder=config.int8_text_encoder,
        max_image_pixels=config.max_upload_pixels,
    )
    images = StoredImages(config.images_dir, config.thumbs_dir)
    signer = CursorSigner(config.cursor_key or secrets.token_bytes(32))
    needed = config.search_threads + 2 * config.keyword_threads
    if config.pool_size is not None and config.pool_size < needed:
        raise ValueError("search_threads + 2 × keyword_threads must be ≤ pool_size")
    pool = ConnectionPool(
        config.database_url,
        min_size=2,
        max_size=config.pool_size or needed,
        configure=register_vector,
        kwargs={"autocommit": True},
        open=False,
    )
    bounds = (config.queue_limit, config.deadline_s, config.statement_timeout_s)
    work = SearchPool(config.search_threads, *bounds)
    keyword_work = SearchPool(config.keyword_threads, *bounds)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if config.torch_threads is not None:
            import torch

            torch.set_num_threads(config.torch_threads)
        pool.open(wait=True)
        with pool.connection() as conn:
            searcher.warm(conn)
        yield
        work.shutdown()
        keyword_work.shutdown()
        pool.close()

    app = FastAPI(
        title="featuregen search",
        summary="Text, keyword, hybrid and image search over the DINOv2 feature store.",
        lifespan=lifespan,
        docs_url=None,  # /docs below: Swagger UI from a package, not from a CDN
        redoc_url=None,
    )

    def answer(query: SearchQuery, deadline: Deadline) -> dict:
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
            found = searcher.search(conn, query, spare_connection).as_dict()
        found["next_cursor"] = signer.sign(found["next_cursor"])
        return found

    async def search_in_pool(query: SearchQuery) -> dict:
        lane = keyword_work if query.kind() in ("keyword", "hybrid") else work
        return await lane.run(lambda deadline: answer(query, deadline))

    too_large = f"the upload is over the limit of {config.max_upload_bytes:,} bytes"

    @app.middleware("http")
    async def refuse_large_uploads(request: Request, call_next):
        """Refuse a declared oversize body before it is read (the handler checks it too)."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > config.max_upload_bytes + 65536:
            return JSONResponse({"detail": too_large}, status_code=413)
        return await call_next(request)

    app.add_middleware(
        Guard,
        settings=GuardSettings(config.bound_host, tuple(config.allowed_hosts), config.token),
    )
    _add_error_handlers(app, config)

    @app.get("/api/search", summary="Search by text, keyword, hybrid, or like=<image id>.")
    async def search(
        q: Annotated[str | None, Query(description="What to look for, in words.")] = None,
        mode: Annotated[Literal["text", "keyword", "hybrid"], Query()] = "text",
        like: Annotated[str | None, Query(description="Images like this stored image.")] = None,
        category: Annotated[str | None, Query(description="Only this category.")] = None,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Hits per page.")] = 20,
        cursor: Annotated[str | None, Query(description="next_cursor of the last page.")] = None,
        rrf_k: Annotated[
            float, Query(ge=0, description="Hybrid: reciprocal-rank fusion constant.")
        ] = DEFAULT_CONSTANT,
    ) -> dict:
        if q is None and like is None:
            raise BadQuery("give q=<words> (mode text, keyword or hybrid) or like=<image id>")
        query = SearchQuery(
            text=q,
            mode=mode,
            like=like,
            category=category or None,
            k=k,
            cursor=signer.verify(cursor),
            rrf_k=rrf_k,
        )
        return await search_in_pool(query)  # a bad query is refused before it takes a thread

    @app.post("/api/search/image", summary="Search with an uploaded image (multipart 'file').")
    async def search_image(
        file: Annotated[UploadFile, File(description="An image file.")],
        category: Annotated[str | None, Form()] = None,
        k: Annotated[int, Form(ge=1, le=MAX_K)] = 20,
        cursor: Annotated[str | None, Form()] = None,
    ) -> dict:
        data = await file.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise TooLarge(too_large)
        if not data:
            raise NotAnImage("the upload is empty")
        query = SearchQuery(
            image=data, category=category or None, k=k, cursor=signer.verify(cursor)
        )
        return await search_in_pool(query)

    @app.post("/api/search/vector", summary="Search with a raw vector of the store's dimension.")
    async def search_vector(body: VectorQuery) -> dict:
        query = SearchQuery(
            vector=body.vector,
            category=body.category or None,
            k=body.k,
            cursor=signer.verify(body.cursor),
        )
        return await search_in_pool(query)

    @app.get("/images/{image_id}", summary="A stored image file, by id.")
    async def image(image_id: str):
        def find(deadline: Deadline):
            with bounded_connection(pool, deadline) as conn:
                return images.original(conn, image_id) or (None, None)

        path, media_type = await work.run(find)
        return _immutable_file(image_id, path, media_type)

    @app.get("/thumbs/{image_id}", summary="A stored image's JPEG thumbnail, by id.")
    async def thumbnail(image_id: str):
        def make(deadline: Deadline):
            with bounded_connection(pool, deadline) as conn:
                return images.thumbnail(conn, image_id)

        return _immutable_file(image_id, await work.run(make), "image/jpeg")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html", headers={"Cache-Control": "no-cache"})

    # Swagger UI's files as the fastapi-offline package ships them: /docs works offline.
    swagger_ui = StaticFiles(packages=[("fastapi_offline", "static")])
    app.mount("/static/swagger-ui", swagger_ui, name="swagger-ui")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _add_error_handlers(app: FastAPI, config: ServeConfig) -> None:
    """Every refusal is its status with a one-line `detail`."""

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
            for e in error.errors()
        )
        return JSONResponse({"detail": problems}, status_code=400)

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def statement_timed_out(_: Request, error: Exception) -> JSONResponse:
        detail = (
            f"the query ran past the {config.statement_timeout_s:g} s statement timeout:"
            " use fewer or more specific words"
        )
        return JSONResponse({"detail": detail}, status_code=503)

    for exception, status in (
        (BadQuery, 400),
        (NotFound, 404),
        (NotAnImage, 415),
        (TooLarge, 413),
        (Unavailable, 503),
        (TooSlow, 503),
    ):
        app.add_exception_handler(exception, _message_handler(status))
    retry = {"Retry-After": str(RETRY_AFTER_S)}
    app.add_exception_handler(Overloaded, _message_handler(503, retry))


def _message_handler(status: int, headers: dict[str, str] | None = None):
    async def handle(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    return handle


def _immutable_file(image_id: str, path: Path | None, media_type: str | None):
    """The file, cached for good (its name is its content's hash), or 404."""
    if path is None:
        return JSONResponse({"detail": f"no stored image {image_id[:80]!r}"}, status_code=404)
    return FileResponse(path, media_type=media_type, headers=IMMUTABLE)
