"""Image query bytes decoded with bounded memory: the downloader's checks, then one decode.

An upload is checked as a downloaded file is (`validate.inspect_image`: a known format, a
header whose size is within the pixel limit) before any pixel is decoded, so a 164 KB PNG of
13000 × 13000 is refused, not inflated to 680 MB. What passes is decoded and shrunk to the
model's input at most `DECODE_SLOTS` at a time in this process, a JPEG at a reduced scale
(DCT scaling), without the copies `preprocess.open_rgb` makes (turned upright in place,
converted only when not RGB already), into the same pixels `open_rgb` gives a stored file:
four 8000 × 8000 PNGs at once raise the server's peak memory by one decode's 256 MB.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from PIL import Image, ImageOps

from featuregen_assets.core.ingest.validate import ImageRejected, inspect_image

T = TypeVar("T")
DECODE_SLOTS = 1  # image decodes at once in this process
# Decodes run on these threads only: the memory a decode frees stays in their malloc arenas
# for the next decode, where decodes on many threads would each keep an arena's worth.
_DECODER = ThreadPoolExecutor(max_workers=DECODE_SLOTS, thread_name_prefix="image-decode")
_REASONS = {
    "not_image": "is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF)",
    "decode_error": "does not decode as an image",
    "too_many_pixels": "has too many pixels",
}


class UploadRejected(ValueError):
    """Bytes that are not an image this service decodes; the message is one line."""


def checked_header(data: bytes, max_pixels: int):
    """The upload's format and size from its header (`validate.inspect_image`: no pixel is
    decoded), or ``UploadRejected`` saying why it is not an image this service decodes."""
    try:
        return inspect_image(data, max_pixels)
    except ImageRejected as error:
        reason = _REASONS.get(error.status, "is refused")
        detail = f" ({error})" if error.status == "too_many_pixels" else ""
        raise UploadRejected(f"the file {reason}{detail}") from None


def decode_upload(
    data: bytes,
    max_pixels: int,
    draft: tuple[int, int] | None,
    prepare: Callable[[Image.Image], T],
) -> T:
    """``prepare`` of ``data`` as an upright RGB image, decoded as `preprocess.open_rgb`
    decodes a stored file (a JPEG at the reduced scale ``draft`` allows); raises
    ``UploadRejected`` saying why not. ``prepare`` (e.g. the model's resize and crop) runs
    within the decode's slot, so the full-size image is gone before the next decode starts."""
    info = checked_header(data, max_pixels)
    try:
        return _DECODER.submit(lambda: prepare(_decode(data, info.format, draft))).result()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UploadRejected(f"the file does not decode as an image ({error})") from None


def _decode(data: bytes, image_format: str, draft: tuple[int, int] | None) -> Image.Image:
    im = Image.open(io.BytesIO(data), formats=[image_format])
    if draft is not None and im.format == "JPEG":
        im.draft("RGB", draft)
    im.load()
    ImageOps.exif_transpose(im, in_place=True)
    if im.mode == "RGB":
        return im
    with im:
        return im.convert("RGB")
