"""Stored images and their thumbnails, found by image id only (never by a path from a request)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import psycopg
from PIL import Image

from featuregen_assets.core.ingest.image_store import EXTENSIONS, ImageStore
from featuregen_assets.core.vision.preprocess import open_rgb

IMAGE_ID = re.compile(r"[0-9a-f]{64}")  # sha256 of the file's bytes
THUMB_SIZE = 256  # longest side, pixels
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}


class StoredImages:
    """Files of the content-addressed store, by id, and thumbnails made once into a cache."""

    def __init__(self, images_dir: Path, thumbs_dir: Path) -> None:
        self.store = ImageStore(images_dir)
        self.thumbs_dir = Path(thumbs_dir)

    def original(self, conn: psycopg.Connection, image_id: str) -> tuple[Path, str] | None:
        """The stored file of ``image_id`` and its media type; None unless the id is a stored
        image's (the path is built from the id and its recorded format, within the store)."""
        if not IMAGE_ID.fullmatch(image_id):
            return None
        row = conn.execute(
            "SELECT format FROM raw_images WHERE image_id = %s AND status = 'ok' LIMIT 1",
            (image_id,),
        ).fetchone()
        if row is None or row[0] not in EXTENSIONS:
            return None
        path = self.store.path_for(image_id, EXTENSIONS[row[0]])
        return (path, MEDIA_TYPES[row[0]]) if path.is_file() else None

    def thumbnail(self, conn: psycopg.Connection, image_id: str) -> Path | None:
        """A JPEG of at most `THUMB_SIZE` pixels a side, made on first request and cached."""
        if not IMAGE_ID.fullmatch(image_id):
            return None
        cached = self.thumbs_dir / image_id[:2] / f"{image_id}.jpg"
        if cached.is_file():
            return cached
        found = self.original(conn, image_id)
        if found is None:
            return None
        try:
            image = open_rgb(found[0], (THUMB_SIZE, THUMB_SIZE))
        except (OSError, Image.DecompressionBombError):
            return None  # a stored file that no longer decodes: the page hides it
        image.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                image.save(handle, "JPEG", quality=85)
            os.replace(tmp, cached)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return cached
