"""Small PNG charts and images for Dagster's UI (markdown metadata with a data URI)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 480, 240, 36


def line_chart(values: Sequence[float], title: str) -> Image.Image:
    """A line chart of `values` against their index, with min/max labels."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 8), title, fill="black")
    left, top, right, bottom = MARGIN, MARGIN, WIDTH - 12, HEIGHT - MARGIN
    draw.rectangle((left, top, right, bottom), outline=(180, 180, 180))
    if values:
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        step = (right - left) / max(1, len(values) - 1)
        points = [
            (left + i * step, bottom - (v - low) / span * (bottom - top))
            for i, v in enumerate(values)
        ]
        draw.line(points if len(points) > 1 else points * 2, fill=(31, 119, 180), width=2)
        draw.text((4, top - 4), f"{high:.3g}", fill="black")
        draw.text((4, bottom - 8), f"{low:.3g}", fill="black")
        draw.text((right - 60, bottom + 6), f"{len(values)} epochs", fill="black")
    return image


def png_bytes(image: Image.Image) -> bytes:
    """The image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def markdown_image(image: Image.Image, alt: str) -> str:
    """Markdown showing the image inline (a base64 PNG data URI)."""
    encoded = base64.b64encode(png_bytes(image)).decode()
    return f"![{alt}](data:image/png;base64,{encoded})"
