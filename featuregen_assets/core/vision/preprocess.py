"""Image preprocessing shared by the vision models: upright RGB decoding (high-depth images
scaled to 8 bits, not clipped) and the one-resample resize-and-centre-crop that DINOv2's
processor describes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def open_rgb(path: Path | str, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image file upright (EXIF orientation) in RGB.

    ``draft`` lets a JPEG decode at a reduced scale no smaller than that size (DCT scaling):
    several times cheaper for large photos that are about to be shrunk anyway.
    """
    with Image.open(path) as im:
        if draft is not None and im.format == "JPEG":
            im.draft("RGB", draft)
        im = ImageOps.exif_transpose(im)
        return to_rgb(im)


_SIXTEEN_BIT = (0.0, 65535.0)


def _value_range(mode: str, values: np.ndarray) -> tuple[float, float]:
    """The range of a high-depth mode's values that maps onto 0-255: 16-bit modes (and "I"
    holding 16-bit data, as 16-bit PNGs and TIFFs open) their full range, a float image in
    [0, 1] that range, anything else its own minimum and maximum."""
    low, high = float(values.min()), float(values.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= _SIXTEEN_BIT[1]):
        return _SIXTEEN_BIT
    if mode == "F" and low >= 0 and high <= 1:
        return 0.0, 1.0
    return low, max(high, low + 1e-12)


def to_rgb(im: Image.Image) -> Image.Image:
    """`im` in 8-bit RGB. Single-channel high-depth images (16-bit, 32-bit integer, float) are
    scaled into 0-255 by their range (`_value_range`); Pillow's own conversion would clip them
    (a 16-bit PNG becomes almost all white)."""
    if not (im.mode.startswith("I;16") or im.mode in ("I", "F")):
        return im.convert("RGB")
    values = np.asarray(im, dtype=np.float64)
    low, high = _value_range(im.mode, values)
    grey = np.rint(np.clip((values - low) * (255.0 / (high - low)), 0, 255)).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


@dataclass(frozen=True)
class CropResize:
    """Resize (shortest edge, or to a fixed size) then centre-crop, as one Pillow resample."""

    shortest_edge: int | None
    size: tuple[int, int] | None  # (height, width) when resizing to a fixed size
    crop: tuple[int, int] | None  # (height, width)
    resample: int

    @classmethod
    def from_processor(cls, processor) -> CropResize:
        """Read the geometry from a transformers image processor (BitImageProcessor config)."""
        size, crop = processor.size, processor.crop_size
        shortest = size.get("shortest_edge") if processor.do_resize else None
        fixed = (size["height"], size["width"]) if processor.do_resize and not shortest else None
        cropped = (crop["height"], crop["width"]) if processor.do_center_crop else None
        return cls(shortest, fixed, cropped, _pil_resample(processor.resample))

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize, before the crop."""
        if self.shortest_edge:
            s = self.shortest_edge
            if width <= height:
                return s, int(s * height / width)
            return int(s * width / height), s
        if self.size:
            return self.size[1], self.size[0]
        return width, height

    def output_shape(self) -> tuple[int, int, int]:
        """(height, width, 3) of every output; raises unless the geometry fixes it."""
        if self.crop:
            return (*self.crop, 3)
        if self.size:
            return (*self.size, 3)
        raise ValueError("preprocessing must end in a fixed size (a centre crop or fixed resize)")

    def draft_size(self) -> tuple[int, int] | None:
        """The smallest decode size that still covers the resize target."""
        if self.shortest_edge:
            return self.shortest_edge, self.shortest_edge
        return (self.size[1], self.size[0]) if self.size else None

    def decode(self, source: Path | str | io.BytesIO) -> np.ndarray:
        """HWC uint8 pixels of an image file, decoded upright (JPEG draft at the resize
        target), resized and cropped: what loader workers hand the model."""
        return self(open_rgb(source, self.draft_size()))

    def window(self, width: int, height: int) -> tuple[tuple[float, ...], tuple[int, int]]:
        """The part of a width × height image the output shows (left, top, right, bottom in
        its pixels) and the output's (width, height)."""
        rw, rh = self.output_size(width, height)
        cw, ch = (self.crop[1], self.crop[0]) if self.crop else (rw, rh)
        left, top = (rw - cw) // 2, (rh - ch) // 2  # the crop in resized coordinates
        sx, sy = rw / width, rh / height
        return (left / sx, top / sy, (left + cw) / sx, (top + ch) / sy), (cw, ch)

    def __call__(self, im: Image.Image) -> np.ndarray:
        """HWC uint8 pixels of the resized, cropped image."""
        box, size = self.window(*im.size)
        out = im.resize(size, self.resample, box=box, reducing_gap=3.0)
        return np.asarray(out, dtype=np.uint8)


def _pil_resample(resample) -> int:
    """Pillow's filter for a processor's ``resample`` (Pillow enum or torchvision mode)."""
    if isinstance(resample, int):
        return int(resample)
    name = str(getattr(resample, "name", resample)).upper()
    return int(getattr(Image.Resampling, name, Image.Resampling.BICUBIC))
