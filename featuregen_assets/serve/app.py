"""The ASGI application: the search API, stored images and thumbnails by id, and the page."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import psycopg
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from featuregen_assets.core.search.engine import (
    MAX_K,
    BadQuery,
    NotAnImage,
    NotFound,
    SearchQuery,
    Unavailable,
)
from featuregen_assets.core.search.fusion import DEFAULT_CONSTANT
from featuregen_assets.core.search.info import store_info
from featuregen_assets.core.search.modes import mode_names
from featuregen_assets.serve.backend import MAX_UPLOAD_BYTES, Backend, ServeConfig
from featuregen_assets.serve.guard import Guard, GuardSettings
from featuregen_assets.serve.limits import RETRY_AFTER_S, Overloaded, TooSlow

__all__ = ["MAX_UPLOAD_BYTES", "ServeConfig", "create_app"]
STATIC = Path(__file__).parent / "static"
MAX_VECTOR_LENGTH = 8192
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}  # content-addressed files


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
    backend = Backend(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        backend.open()
        yield
        backend.close()

    app = FastAPI(
        title="featuregen search",
        summary="Caption, image, keyword and hybrid search over the feature store.",
        lifespan=lifespan,
        docs_url=None,  # /docs below: Swagger UI from a package, not from a CDN
        redoc_url=None,
    )

    too_large = f"the upload is over the limit of {config.max_upload_bytes:,} bytes"

    app.add_middleware(
        Guard,
        settings=GuardSettings(
            config.bound_host,
            tuple(config.allowed_hosts),
            config.token,
            max_body_bytes=config.max_upload_bytes + 65536,  # the form around the file
            too_large=too_large,
        ),
    )
    _add_error_handlers(app, config)

    @app.get("/api/info", summary="The search modes, the default, examples, categories, models.")
    async def info() -> dict:
        return await backend.with_connection(lambda c: store_info(c, backend.searcher))

    @app.get("/api/search", summary="Search by words (in a mode), or like=<image id>.")
    async def search(
        q: Annotated[str | None, Query(description="What to look for, in words.")] = None,
        mode: Annotated[
            str | None,
            Query(description=f"{' | '.join(mode_names())}; unset: the default (/api/info)."),
        ] = None,
        version: Annotated[
            str | None,
            Query(description="A registered text encoder version (read by image and hybrid)."),
        ] = None,
        like: Annotated[str | None, Query(description="Images like this stored image.")] = None,
        category: Annotated[str | None, Query(description="Only this category.")] = None,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Hits per page.")] = 20,
        cursor: Annotated[str | None, Query(description="next_cursor of the last page.")] = None,
        rrf_k: Annotated[
            float, Query(ge=0, description="Hybrid: reciprocal-rank fusion constant.")
        ] = DEFAULT_CONSTANT,
    ) -> dict:
        if q is None and like is None:
            raise BadQuery("give q=<words> (and a mode, or the default) or like=<image id>")
        query = SearchQuery(
            text=q,
            mode=mode or None,
            version=version or None,
            like=like,
            category=category or None,
            k=k,
            cursor=cursor,
            rrf_k=rrf_k,
        )
        return await backend.search(query)

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
        return await backend.search(
            SearchQuery(image=data, category=category or None, k=k, cursor=cursor)
        )

    @app.post("/api/search/vector", summary="Search with a raw vector of the store's dimension.")
    async def search_vector(body: VectorQuery) -> dict:
        query = SearchQuery(
            vector=body.vector, category=body.category or None, k=body.k, cursor=body.cursor
        )
        return await backend.search(query)

    @app.get("/images/{image_id}", summary="A stored image file, by id.")
    async def image(image_id: str):
        found = await backend.with_connection(lambda c: backend.images.original(c, image_id))
        path, media_type = found or (None, None)
        return _immutable_file(image_id, path, media_type)

    @app.get("/thumbs/{image_id}", summary="A stored image's JPEG thumbnail, by id.")
    async def thumbnail(image_id: str):
        path = await backend.with_connection(lambda c: backend.images.thumbnail(c, image_id))
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
