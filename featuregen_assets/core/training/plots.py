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


def interval_bars(
    labels: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    title: str,
    top: float = 1.0,
) -> Image.Image:
    """Horizontal bars from 0 to each value (0..`top`), with its interval as a black whisker."""
    row, label_width = 18, 230
    height = MARGIN + row * len(labels) + 12
    image = Image.new("RGB", (WIDTH + label_width - MARGIN, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 8), title, fill="black")
    left, right = label_width, label_width + WIDTH - 2 * MARGIN

    def x(v: float) -> float:
        return left + max(0.0, min(1.0, v / top)) * (right - left)

    for i, (label, value, low, high) in enumerate(zip(labels, values, lows, highs, strict=True)):
        y = MARGIN + i * row
        draw.text((8, y + 2), label[:36], fill="black")
        draw.rectangle((left, y + 3, x(value), y + row - 3), fill=(31, 119, 180))
        draw.line((x(low), y + row / 2, x(high), y + row / 2), fill="black", width=2)
        draw.text((x(max(value, high)) + 4, y + 2), f"{value:.2f}", fill="black")
    return image
