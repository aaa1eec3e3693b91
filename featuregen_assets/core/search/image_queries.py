"""The vectors of queries that are not words: an uploaded image (embedded as stored images
are), a stored image's own vector (more like this) and a raw vector (checked against the
store's dimension)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg

from featuregen_assets.core.ingest.fetch import DownloadSettings
from featuregen_assets.core.search import bounds
from featuregen_assets.core.search.errors import BadQuery, NotAnImage, NotFound, Unavailable
from featuregen_assets.core.search.plan import Timings
from featuregen_assets.core.search.uploads import UploadRejected, checked_header, decode_upload
from featuregen_assets.core.store.nearest import stored_vector, vector_dimension

MAX_IMAGE_PIXELS = DownloadSettings.max_pixels  # an image query is held to the downloader's


def upload_vector(
    conn: psycopg.Connection, models, data: bytes, max_pixels: int, timings: Timings
) -> tuple[np.ndarray, str]:
    """The DINOv2 vector of an uploaded image and its model key; a file that is no image is
    refused from its header before the embedder (``models.image_embedder()``) loads."""
    try:
        checked_header(data, max_pixels)
    except UploadRejected as error:
        raise NotAnImage(str(error)) from None
    embedder = models.image_embedder()
    _require_vectors(conn, embedder.key)
    with timings.measure("encode"):
        return embed_image_bytes(embedder, data, max_pixels), embedder.key


def like_vector(conn: psycopg.Connection, image_id: str, space: str) -> np.ndarray:
    """The stored `space` vector of image ``image_id``; NotFound when it has none."""
    vector = stored_vector(conn, image_id, space)
    if vector is None:
        raise NotFound(f"no image {image_id!r} has a vector of {space}")
    return vector


def checked_vector(conn: psycopg.Connection, values: Sequence[float], model: str) -> np.ndarray:
    """``values`` as a unit float32 vector of the store's dimension; BadQuery saying why not."""
    dim = vector_dimension(conn, model)
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1 or len(vector) != dim:
        raise BadQuery(f"the vector must have {dim} numbers (the store's dimension)")
    try:
        bounds.check_vector_values(vector)
    except ValueError as error:
        raise BadQuery(str(error)) from None
    norm = float(np.linalg.norm(vector))
    if not norm > 0:
        raise BadQuery("the vector must not be all zeros")
    return (vector / norm).astype(np.float32)


def embed_image_bytes(embedder, data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """The DINOv2 vector of image file bytes, preprocessed as stored images are (decoded with
    bounded memory: `uploads.decode_upload`)."""
    import torch

    transform = embedder.transform
    try:
        resized = decode_upload(data, max_pixels, transform.draft_size(), transform)
    except UploadRejected as error:
        raise NotAnImage(str(error)) from None
    pixels = torch.tensor(resized)[None]
    return embedder.embed_pixels(embedder.pixels_to_input(pixels))[0].cpu().numpy()


def _require_vectors(conn: psycopg.Connection, model: str) -> None:
    if vector_dimension(conn, model) is None:
        raise Unavailable(f"no images are embedded by {model}: run the image_embeddings step")
