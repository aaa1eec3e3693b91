"""Magic-byte sniffing and Pillow validation of downloaded bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from featuregen_assets.core.ingest.validate import ImageRejected, inspect_image, sniff
from featuregen_tests.servers import (
    animated_gif,
    encode,
    exif_rotated_jpeg,
    jpeg_bytes,
    noisy_jpeg,
    png_bomb,
)

LIMIT = 90_000_000


def rejected(data: bytes, **kwargs) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        inspect_image(data, kwargs.pop("max_pixels", LIMIT), **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xd8\xff\xe0rest", "JPEG"),
        (b"\x89PNG\r\n\x1a\n....", "PNG"),
        (b"GIF89a....", "GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"<!doctype html><html>", None),
        (b"", None),
    ],
)
def test_sniff_reads_magic_bytes(data: bytes, expected: str | None) -> None:
    assert sniff(data) == expected


def test_jpeg_reports_format_size_mime() -> None:
    info = inspect_image(jpeg_bytes(64, 48), LIMIT)
    assert (info.format, info.width, info.height, info.mime) == ("JPEG", 64, 48, "image/jpeg")


@pytest.mark.parametrize(
    ("im", "image_format"),
    [
        (Image.new("CMYK", (40, 30), (0, 50, 100, 0)), "JPEG"),
        (Image.new("I;16", (40, 30), 40000), "PNG"),
        (Image.new("RGBA", (40, 30), (1, 2, 3, 128)), "PNG"),
        (Image.new("RGB", (40, 30)), "WEBP"),
        (Image.new("RGB", (40, 30)), "BMP"),
    ],
)
def test_unusual_modes_are_accepted(im: Image.Image, image_format: str) -> None:
    info = inspect_image(encode(im, image_format), LIMIT)
    assert (info.format, info.width, info.height) == (image_format, 40, 30)


def test_animated_gif_is_accepted() -> None:
    info = inspect_image(animated_gif(), LIMIT)
    assert (info.format, info.mime) == ("GIF", "image/gif")


def test_exif_rotation_reports_displayed_size() -> None:
    info = inspect_image(exif_rotated_jpeg(60, 40), LIMIT)
    assert (info.width, info.height) == (40, 60)


@pytest.mark.parametrize("full_decode", [False, True])
def test_truncated_jpeg_is_a_decode_error(full_decode: bool) -> None:
    data = noisy_jpeg()
    assert rejected(data[: len(data) * 2 // 3], full_decode=full_decode).status == "decode_error"


def test_truncated_png_is_a_decode_error() -> None:
    data = encode(Image.effect_noise((64, 64), 50), "PNG")
    assert rejected(data[: len(data) // 2]).status == "decode_error"


def test_corrupt_png_crc_is_a_decode_error() -> None:
    data = bytearray(encode(Image.effect_noise((64, 64), 50), "PNG"))
    data[len(data) // 2] ^= 0xFF
    assert rejected(bytes(data)).status == "decode_error"


def test_pixel_bomb_is_refused_without_touching_pillow_global() -> None:
    before = Image.MAX_IMAGE_PIXELS
    bomb = png_bomb()
    assert len(bomb) < 100_000
    assert rejected(bomb).status == "too_many_pixels"
    assert rejected(jpeg_bytes(100, 100), max_pixels=9_999).status == "too_many_pixels"
    assert before == Image.MAX_IMAGE_PIXELS


def test_own_limit_applies_even_above_pillow_global() -> None:
    big = png_bomb(14_000, 14_000)  # past 2 x Image.MAX_IMAGE_PIXELS: Image.open would raise
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(big))
    info = inspect_image(big, max_pixels=200_000_000)
    assert (info.width, info.height) == (14_000, 14_000)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", "not_image"),
        (b"<html><body>not an image</body></html>", "not_image"),
        (b"\x89PNG\r\n\x1a\ngarbage", "decode_error"),
    ],
)
def test_non_images_are_rejected(data: bytes, status: str) -> None:
    assert rejected(data).status == status
