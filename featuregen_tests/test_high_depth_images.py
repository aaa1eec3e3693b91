"""High-depth images (16-bit, 32-bit integer, float) are scaled to 8 bits, not clipped."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featuregen_assets.core.ingest.image_store import ImageStore
from featuregen_assets.core.ingest.validate import inspect_image
from featuregen_assets.core.store import db
from featuregen_assets.core.vision.preprocess import CropResize, to_rgb
from featuregen_assets.serve.files import StoredImages


def _ramp_png(width: int = 512, height: int = 64) -> bytes:
    """A 16-bit greyscale PNG ramping from 0 to 65535 left to right (mean grey 127.5)."""
    ramp = np.tile(np.linspace(0, 65535, width), (height, 1)).astype(np.uint16)
    out = io.BytesIO()
    Image.fromarray(ramp).save(out, "PNG")
    return out.getvalue()


def test_a_16_bit_ramps_thumbnail_and_model_input_have_its_mean_grey(
    database_url: str, tmp_path: Path
) -> None:
    data = _ramp_png()
    info = inspect_image(data, 10**8)
    image_id, path = ImageStore(tmp_path / "images").put(data, info.format)
    with db.connection(database_url) as conn:
        conn.execute(
            "INSERT INTO raw_images (category, url, status, image_id, path, format)"
            " VALUES ('ramp', 'http://x/ramp.png', 'ok', %s, %s, 'PNG')",
            (image_id, str(path)),
        )
        thumb = StoredImages(tmp_path / "images", tmp_path / "thumbs").thumbnail(conn, image_id)
    with Image.open(path) as original:
        assert original.mode == "I;16"  # what Pillow's RGB conversion clipped to white
        assert np.asarray(original.convert("RGB")).mean() > 250
    pixels = np.asarray(Image.open(thumb), dtype=np.float64)
    assert pixels.mean() == pytest.approx(127.5, abs=2)
    assert pixels[:, :8].mean() < 10 and pixels[:, -8:].mean() > 245  # a ramp, not a flat grey
    crop = CropResize(shortest_edge=None, size=(64, 512), crop=None, resample=Image.BILINEAR)
    assert crop.decode(path).mean() == pytest.approx(127.5, abs=2)


@pytest.mark.parametrize(
    ("values", "mode", "expected"),
    [
        (np.array([[0, 32768, 65535]], dtype=np.int32), "I", [0, 128, 255]),  # 16-bit data
        (np.array([[-10, 0, 10]], dtype=np.int32), "I", [0, 128, 255]),  # its own range
        (np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F", [0, 128, 255]),
        (np.array([[-2.0, 0.0, 2.0]], dtype=np.float32), "F", [0, 128, 255]),
    ],
)
def test_integer_and_float_images_are_scaled_by_their_range(values, mode, expected) -> None:
    im = Image.fromarray(values)
    assert im.mode == mode
    rgb = np.asarray(to_rgb(im))
    assert rgb.shape == (1, 3, 3)
    assert list(rgb[0, :, 0]) == expected and (rgb[..., 0] == rgb[..., 2]).all()
