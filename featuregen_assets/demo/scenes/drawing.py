"""One scene drawn from (seed, category, index): its backdrop, objects, label mask and encoded
image file (JPEG or PNG, a few JPEGs stored EXIF-rotated)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image, ImageDraw

from featuregen_assets.demo.scenes.truth import (
    BACKDROPS,
    CLASS_NAMES,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    SWAP_EVERY,
    TYPICAL,
    Scene,
    SceneObject,
    caption_for,
)

JPEG_QUALITIES = (60, 75, 85, 95)
EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that stores an upright image so that exif_transpose undoes it.
_STORE_TRANSPOSE = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def _rng(seed: int, category: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(category.encode()), index])


def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    """Mostly 224–512 px, a few up to 800 px, a few non-square."""
    side = int(rng.integers(512, 801)) if rng.random() < 0.12 else int(rng.integers(224, 513))
    aspect = float(rng.choice([1.0, 1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3]))
    if aspect >= 1:
        return int(side * aspect), side
    return side, int(side / aspect)


def _noise(rng: np.random.Generator, h: int, w: int, amount: float) -> np.ndarray:
    return rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(amount)


def _background(backdrop: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """One of `BACKDROPS` as an (h, w, 3) uint8 array (any category may get any backdrop)."""
    y = np.arange(h, dtype=np.float32)[:, None, None] / h
    x = np.arange(w, dtype=np.float32)[None, :, None] / w
    phase = float(rng.random()) * 2 * math.pi

    def rgb(*c: float) -> np.ndarray:
        return np.array(c, dtype=np.float32)

    if backdrop == "asphalt":  # grey asphalt, pale pavements, dashed lane stripes
        img = rgb(100, 100, 105) + 20 * y + _noise(rng, h, w, 8)
        img = np.where((y < 0.12) | (y > 0.88), rgb(175, 170, 160), img)
        stripe = (np.abs(y - 0.5) < 0.015) & ((x * 8 + phase) % 1 < 0.55)
        img = np.where(stripe, rgb(235, 235, 225), img)
    elif backdrop == "shelves":  # cream wall with wooden shelf uprights
        img = rgb(225, 212, 190) + _noise(rng, h, w, 5)
        img = np.where((x * 5 + phase) % 1 < 0.08, rgb(150, 105, 65), img)
    elif backdrop == "aisle":  # white-grey aisle with horizontal shelves
        img = rgb(222, 228, 232) + _noise(rng, h, w, 4)
        img = np.where((y * 6 + phase) % 1 < 0.07, rgb(140, 145, 150), img)
        img = np.where(((y * 6 + phase) % 1 > 0.07) & ((y * 6 + phase) % 1 < 0.12), 200, img)
    elif backdrop == "tablecloth":  # muted burgundy and cream tablecloth check
        check = ((np.floor(x * 8 + phase) + np.floor(y * 8)) % 2).astype(bool)
        img = np.where(check, rgb(150, 70, 75), rgb(205, 180, 170)) + _noise(rng, h, w, 4)
    elif backdrop == "planks":  # warm wood planks with grain
        plank = np.floor(y * 7 + phase)
        shade = 0.85 + 0.15 * np.sin(plank * 2.3)
        grain = 8 * np.sin(x * 90 + 3 * np.sin(y * 40 + plank))
        img = rgb(165, 110, 65) * shade + grain + _noise(rng, h, w, 4)
    elif backdrop == "marble":  # pale marble with soft veins
        vein = np.abs(np.sin(x * 9 + y * 5 + 1.5 * np.sin(y * 13 + phase) + phase))
        img = rgb(228, 226, 222) - 55 * (vein < 0.08) + _noise(rng, h, w, 5)
    elif backdrop == "vignette":  # dark red tones with a vignette
        r = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2)
        img = rgb(115, 22, 28) * (1.1 - r) + _noise(rng, h, w, 14)
    elif backdrop == "cctv":  # dim greenish CCTV frame: shelves and scan lines
        img = rgb(80, 95, 85) + _noise(rng, h, w, 10)
        img = np.where((x * 4 + phase) % 1 < 0.12, rgb(55, 65, 60), img)
        img = img - 18 * ((np.arange(h)[:, None, None] % 4) == 0)
    elif backdrop == "hazard":  # dark asphalt with a hazard-striped barrier
        img = rgb(60, 60, 62) + _noise(rng, h, w, 10)
        band = np.abs(y - 0.5) < 0.05
        hazard = ((x * 12 + y * 6 + phase) % 1) < 0.5
        img = np.where(band & hazard, rgb(235, 120, 30), np.where(band, rgb(40, 40, 40), img))
    else:
        raise ValueError(f"unknown backdrop {backdrop!r}")
    return np.clip(np.broadcast_to(img, (h, w, 3)), 0, 255).astype(np.uint8)


def _pick(rng: np.random.Generator, typical: Sequence[str], everything: Sequence[str]) -> str:
    return str(rng.choice(typical if rng.random() < 0.5 else everything))


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else r * 0.45
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, s: float, fill):
    r = s / 2
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif shape == "star":
        draw.polygon(_star(cx, cy, r), fill=fill)
    elif shape == "cross":
        t = s / 6
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=fill)
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, round(s / 5)))
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _plan_objects(category: str, rng: np.random.Generator) -> list[tuple[str, str, str, str]]:
    """(shape, colour, size, position) for 1–3 objects at distinct, non-overlapping places."""
    count = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    positions = [str(p) for p in rng.choice(list(POSITIONS), size=count, replace=False)]
    crowded_centre = "centre" in positions and count > 1  # keep corner and centre apart
    typical_shapes, typical_colours = TYPICAL[category]
    plan = []
    for position in positions:
        shape = _pick(rng, typical_shapes, SHAPES)
        colour = _pick(rng, typical_colours, list(COLOURS))
        size = "small" if crowded_centre or rng.random() < 0.5 else "large"
        plan.append((shape, colour, size, position))
    return plan


@dataclass(frozen=True)
class _Rendered:
    scene: Scene
    image: Image.Image  # upright
    mask: Image.Image
    quality: int  # JPEG quality
    orientation: int  # EXIF orientation to store the JPEG with (1: upright)


def _swapped(plan: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]] | None:
    """The plan with colours rotated by one object; None when that changes nothing."""
    colours = [colour for _, colour, _, _ in plan]
    rotated = colours[1:] + colours[:1]
    if rotated == colours:
        return None
    return [(sh, c, si, p) for (sh, _, si, p), c in zip(plan, rotated, strict=True)]


def _layout(category: str, index: int, seed: int):
    """The scene's first draws (size, backdrop, object plan) and the generator to go on with.

    A swap slot replays the previous scene's generator with the plan's colours rotated, so the
    twin differs from it only in which object has which colour (when that changes anything).
    """
    if index % SWAP_EVERY == SWAP_EVERY - 1:
        rng = _rng(seed, category, index - 1)
        size, backdrop = _image_size(rng), str(rng.choice(BACKDROPS))
        swapped = _swapped(_plan_objects(category, rng))
        if swapped is not None:
            return rng, size, backdrop, swapped, f"{category}_{index - 1:03d}"
    rng = _rng(seed, category, index)
    size, backdrop = _image_size(rng), str(rng.choice(BACKDROPS))
    return rng, size, backdrop, _plan_objects(category, rng), None


def _render(category: str, index: int, seed: int) -> _Rendered:
    """The upright image, its mask, its truth and how to encode it."""
    rng, (w, h), backdrop, plan, swap_of = _layout(category, index, seed)
    image = Image.fromarray(_background(backdrop, w, h, rng), "RGB")
    mask = Image.new("L", (w, h), 0)
    draw, mask_draw = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    short = min(w, h)
    objects = []
    for shape, colour, size, position in plan:
        fx, fy = POSITIONS[position]
        jitter = 0.0 if position == "centre" else 0.02
        cx = (fx + rng.uniform(-jitter, jitter)) * w
        cy = (fy + rng.uniform(-jitter, jitter)) * h
        s = SIZES[size] * short * rng.uniform(0.95, 1.08)
        class_id = CLASS_NAMES.index(shape)
        _draw_shape(draw, shape, cx, cy, s, COLOURS[colour])
        _draw_shape(mask_draw, shape, cx, cy, s, class_id)
        x0, y0 = max(0, int(cx - s / 2) - 1), max(0, int(cy - s / 2) - 1)
        region = np.asarray(mask.crop((x0, y0, int(cx + s / 2) + 2, int(cy + s / 2) + 2)))
        ys, xs = np.nonzero(region == class_id)
        box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1)
        box += (y0 + int(ys.max()) + 1,)
        objects.append(SceneObject(shape, colour, size, position, box, class_id))
    image_format = "PNG" if rng.random() < 0.2 else "JPEG"
    orientation = 1
    if image_format == "JPEG" and index % 16 == 5:  # a few EXIF-rotated JPEGs per category
        orientation = int(rng.choice(sorted(_STORE_TRANSPOSE)))
    scene = Scene(
        name=f"{category}_{index:03d}",
        category=category,
        caption=caption_for(objects, category),
        objects=tuple(objects),
        width=w,
        height=h,
        format=image_format,
        exif_rotated=orientation != 1,
        backdrop=backdrop,
        swap_of=swap_of,
    )
    return _Rendered(scene, image, mask, int(rng.choice(JPEG_QUALITIES)), orientation)


def _encode(rendered: _Rendered) -> bytes:
    buffer = BytesIO()
    if rendered.scene.format == "PNG":
        rendered.image.save(buffer, "PNG", compress_level=1)
    elif rendered.orientation in _STORE_TRANSPOSE:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = rendered.orientation
        stored = rendered.image.transpose(_STORE_TRANSPOSE[rendered.orientation])
        stored.save(buffer, "JPEG", quality=rendered.quality, exif=exif.tobytes())
    else:
        rendered.image.save(buffer, "JPEG", quality=rendered.quality)
    return buffer.getvalue()


def render_scene(category: str, index: int, seed: int = 0) -> tuple[Scene, bytes, bytes]:
    """One scene's truth, its image file bytes and its mask PNG bytes."""
    rendered = _render(category, index, seed)
    mask_buffer = BytesIO()
    rendered.mask.save(mask_buffer, "PNG")
    return rendered.scene, _encode(rendered), mask_buffer.getvalue()
