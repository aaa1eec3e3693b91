"""The ASGI application: the search API, stored images and thumbnails by id, and the page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
    MAX_K,
    BadQuery,
    NotAnImage,
    NotFound,
    Searcher,
    SearchQuery,
    Unavailable,
)
from featuregen_assets.core.search.fusion import DEFAULT_CONSTANT
from featuregen_assets.serve.files import StoredImages

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
SPARE_WAIT_S = 0.05  # a hybrid query waits this long for a second connection, else goes on
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}  # content-addressed files


@dataclass(frozen=True)
class ServeConfig:
    """What the application serves: the database, the image store, where thumbnails are
    cached, the largest upload, how to build the image embedder (None: no image queries),
    whether the text encoder runs in int8, and torch's threads per request."""

    database_url: str
    images_dir: Path
    thumbs_dir: Path
    embedder_factory: Callable[[], object] | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    pool_size: int = 8  # a hybrid query takes two
    int8_text_encoder: bool = True
    # Requests run at once in uvicorn's thread pool: one intra-op thread each, or they fight
    # over the cores (a float32 query took 4-5x longer with two threads on a busy 2-CPU host).
    torch_threads: int | None = 1


class TooLarge(ValueError):
    """An upload over the size limit (HTTP 413)."""


class VectorQuery(BaseModel):
    """A raw query vector of the store's dimension (normalised here; cosine ranks)."""

    vector: list[float]
    category: str | None = None
    k: int = Field(default=20, ge=1, le=MAX_K)
    cursor: str | None = None


def create_app(config: ServeConfig) -> FastAPI:
    """The application; its connection pool opens and the text encoder loads at start-up."""
    searcher = Searcher(config.embedder_factory, int8_text_encoder=config.int8_text_encoder)
    images = StoredImages(config.images_dir, config.thumbs_dir)
    pool = ConnectionPool(
        config.database_url,
        min_size=2,
        max_size=config.pool_size,
        configure=register_vector,
        kwargs={"autocommit": True},
        open=False,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if config.torch_threads is not None:
            import torch

            torch.set_num_threads(config.torch_threads)
        pool.open(wait=True)
        with pool.connection() as conn:
            searcher.warm(conn)
        yield
        pool.close()

    app = FastAPI(
        title="featuregen search",
        summary="Text, keyword, hybrid and image search over the DINOv2 feature store.",
        lifespan=lifespan,
        docs_url=None,  # /docs below: Swagger UI from a package, not from a CDN
        redoc_url=None,
    )

    @contextmanager
    def connection() -> Iterator[psycopg.Connection]:
        with pool.connection() as conn:
            yield conn

    @contextmanager
    def spare_connection() -> Iterator[psycopg.Connection | None]:
        """A second connection if one is free at once (never wait while holding one)."""
        try:
            conn = pool.getconn(timeout=SPARE_WAIT_S)
        except PoolTimeout:
            yield None
            return
        try:
            yield conn
        finally:
            pool.putconn(conn)

    def answer(query: SearchQuery) -> dict:
        with connection() as conn:
            return searcher.search(conn, query, spare_connection).as_dict()

    too_large = f"the upload is over the limit of {config.max_upload_bytes:,} bytes"

    @app.middleware("http")
    async def refuse_large_uploads(request: Request, call_next):
        """Refuse a declared oversize body before it is read (the handler checks it too)."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > config.max_upload_bytes + 65536:
            return JSONResponse({"detail": too_large}, status_code=413)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
            for e in error.errors()
        )
        return JSONResponse({"detail": problems}, status_code=400)

    for exception, status in (
        (BadQuery, 400),
        (NotFound, 404),
        (NotAnImage, 415),
        (TooLarge, 413),
        (Unavailable, 503),
    ):
        app.add_exception_handler(exception, _message_handler(status))

    @app.get("/api/search", summary="Search by text, keyword, hybrid, or like=<image id>.")
    def search(
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
        return answer(
            SearchQuery(
                text=q,
                mode=mode,
                like=like,
                category=category or None,
                k=k,
                cursor=cursor or None,
                rrf_k=rrf_k,
            )
        )

    @app.post("/api/search/image", summary="Search with an uploaded image (multipart 'file').")
    def search_image(
        file: Annotated[UploadFile, File(description="An image file.")],
        category: Annotated[str | None, Form()] = None,
        k: Annotated[int, Form(ge=1, le=MAX_K)] = 20,
        cursor: Annotated[str | None, Form()] = None,
    ) -> dict:
        data = file.file.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise TooLarge(too_large)
        if not data:
            raise NotAnImage("the upload is empty")
        return answer(
            SearchQuery(image=data, category=category or None, k=k, cursor=cursor or None)
        )

    @app.post("/api/search/vector", summary="Search with a raw vector of the store's dimension.")
    def search_vector(body: VectorQuery) -> dict:
        return answer(
            SearchQuery(
                vector=body.vector,
                category=body.category or None,
                k=body.k,
                cursor=body.cursor or None,
            )
        )

    @app.get("/images/{image_id}", summary="A stored image file, by id.")
    def image(image_id: str):
        with connection() as conn:
            path, media_type = images.original(conn, image_id) or (None, None)
        return _immutable_file(image_id, path, media_type)

    @app.get("/thumbs/{image_id}", summary="A stored image's JPEG thumbnail, by id.")
    def thumbnail(image_id: str):
        with connection() as conn:
            path = images.thumbnail(conn, image_id)
        return _immutable_file(image_id, path, "image/jpeg")

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


def _message_handler(status: int):
    async def handle(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status)

    return handle


def _immutable_file(image_id: str, path: Path | None, media_type: str | None):
    """The file, cached for good (its name is its content's hash), or 404."""
    if path is None:
        return JSONResponse({"detail": f"no stored image {image_id[:80]!r}"}, status_code=404)
    return FileResponse(path, media_type=media_type, headers=IMMUTABLE)
