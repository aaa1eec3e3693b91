"""Image preprocessing shared by the vision models: upright RGB decoding and the one-resample
resize-and-centre-crop that DINOv2's processor describes."""

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
        return im.convert("RGB")


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
