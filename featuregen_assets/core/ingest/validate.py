"""Is this byte string an image we keep? Magic-byte sniffing, then Pillow, with a pixel limit.

The bytes are never altered: validation only reads them. Cost is chosen deliberately
(see benchmarks/results/download.md): a full JPEG decode costs ~3-4 ms per megapixel while
the header costs ~0.02 ms, so by default

- JPEG: the header is parsed (markers up to the first scan: size, mode, EXIF) and the
  end-of-image marker must follow the scan data. 0xFFD9 cannot occur inside entropy-coded
  data (0xFF is byte-stuffed there), so this catches every truncated file, the common
  corruption of a download, without decoding pixels.
- PNG: `verify()` checks the CRC of every chunk (IDAT included) up to IEND, without inflating.
- GIF, WebP, BMP, TIFF: the first frame is decoded (rare formats, usually small).

`full_decode=True` decodes JPEG too (at 1/8 scale: all entropy data is still decoded, the
inverse DCT mostly skipped) and inflates PNG, catching corruption inside the pixel data.

The pixel limit is our own check on the header's size, made before any decoding; Pillow's
global `Image.MAX_IMAGE_PIXELS` is neither read nor changed (the format's opener is called
directly, not through `Image.open`, which applies the global limit).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, JpegImagePlugin, UnidentifiedImageError

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (8, b"WEBP", "WEBP"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
)
SNIFF_BYTES = 16
_ORIENTATION_TAG = 0x0112
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class ImageInfo:
    """What validation learnt about an image; width/height as displayed (EXIF orientation)."""

    format: str
    width: int
    height: int
    mime: str


class ImageRejected(Exception):
    """The bytes are not an acceptable image; `status` is the downloader's reason code."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def sniff(head: bytes) -> str | None:
    """The Pillow format name the leading bytes announce, or None when not a known image."""
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic and (name != "WEBP" or head[:4] == b"RIFF"):
            return name
    return None


def _open(data: bytes, image_format: str) -> Image.Image:
    if image_format == "JPEG":
        return JpegImagePlugin.JpegImageFile(io.BytesIO(data))
    Image.init()
    factory, _accept = Image.OPEN[image_format]
    return factory(io.BytesIO(data), None)


def _check_integrity(im: Image.Image, data: bytes, image_format: str, full_decode: bool) -> None:
    if image_format == "JPEG":
        scan_start = im.tile[0][2] if im.tile else 0
        if data.rfind(b"\xff\xd9", scan_start) < 0:
            raise ImageRejected("decode_error", "truncated JPEG: no end-of-image marker")
        if full_decode:
            im.draft(None, (1, 1))
            im.load()
    elif image_format == "PNG" and not full_decode:
        im.verify()
    else:
        im.load()


def _displayed_size(im: Image.Image, image_format: str) -> tuple[int, int]:
    width, height = im.size
    if image_format in ("JPEG", "WEBP", "TIFF"):
        orientation = im.getexif().get(_ORIENTATION_TAG)
        if orientation in _TRANSPOSED_ORIENTATIONS:
            return height, width
    return width, height


def inspect_image(data: bytes, max_pixels: int, *, full_decode: bool = False) -> ImageInfo:
    """Validate `data` as an image; raise `ImageRejected` (not_image, decode_error,
    too_many_pixels) when it is not one we keep."""
    if not data:
        raise ImageRejected("not_image", "empty body (0 bytes)")
    image_format = sniff(data[:SNIFF_BYTES])
    if image_format is None:
        raise ImageRejected("not_image", f"unknown content starting {data[:8]!r}")
    try:
        im = _open(data, image_format)
        width, height = im.size
        if width * height > max_pixels:
            raise ImageRejected(
                "too_many_pixels", f"{width}x{height} = {width * height} pixels > {max_pixels}"
            )
        displayed = _displayed_size(im, image_format)
        _check_integrity(im, data, image_format, full_decode)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected("decode_error", f"{image_format}: {exc}") from None
    except Exception as exc:  # Pillow plugins raise assorted errors on hostile input
        raise ImageRejected(
            "decode_error", f"{image_format}: {type(exc).__name__}: {exc}"
        ) from None
    mime = Image.MIME.get(image_format, "application/octet-stream")
    return ImageInfo(format=image_format, width=displayed[0], height=displayed[1], mime=mime)
