"""Synthetic scenes with known truth: the offline demo's images, captions, records and masks.

Benchmark v2: the backdrop (texture and palette) of every scene is drawn from one pool shared
by all categories, so the category cannot be read from the background; a category shows only
in its typical objects (1–3 drawn from shape × colour × size × position). Some combinations
(`HELD_OUT_COMBINATIONS`) are meant for test images only, and every fourth scene is the
attribute-swap twin of the one before it (same backdrop and places, colours exchanged between
its objects): a hard negative for a text encoder that counts words without binding them.
Every image comes with its truth: a caption written from the scene, a JSON record
(`truth/<name>.json`) and a per-pixel label mask (`masks/<name>.png`, shape class ids,
0 = background). Everything is a pure function of (seed, category, index), so a dataset is
byte-identical however it is generated.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = (
    "city_street",
    "shop",
    "supermarket",
    "restaurant",
    "cafe",
    "bank",
    "fight",
    "shoplifting",
    "road_accident",
)
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
CLASS_NAMES = ("background", *SHAPES)
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 50),
    "blue": (30, 60, 220),
    "yellow": (245, 220, 30),
    "purple": (140, 40, 180),
    "orange": (250, 130, 20),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
SIZES = {"small": 0.18, "large": 0.36}  # object side as a fraction of the image's shorter side
POSITIONS = {
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
    "centre": (0.5, 0.5),
}
CATEGORY_PHRASES = {
    "city_street": "in a city street",
    "shop": "in a shop",
    "supermarket": "in a supermarket",
    "restaurant": "in a restaurant",
    "cafe": "in a cafe",
    "bank": "in a bank",
    "fight": "at a fight",
    "shoplifting": "at a shoplifting",
    "road_accident": "at a road accident",
}
BACKDROPS = (
    "asphalt",
    "shelves",
    "aisle",
    "tablecloth",
    "planks",
    "marble",
    "vignette",
    "cctv",
    "hazard",
)
# Phrases in captions that only test images may contain (colour x shape, shape x position):
# the compositional split. A text encoder that binds words generalises to them.
HELD_OUT_COMBINATIONS = ("purple circle", "yellow star", "ring at the bottom left")
SWAP_EVERY = 4  # scene index % SWAP_EVERY == SWAP_EVERY - 1: the attribute-swap twin of index - 1
# Shapes and colours drawn more often in each category; every shape and colour stays possible.
TYPICAL = {
    "city_street": (("square", "cross"), ("yellow", "white")),
    "shop": (("square", "star"), ("orange", "blue")),
    "supermarket": (("square", "circle"), ("green", "orange")),
    "restaurant": (("circle", "ring"), ("white", "red")),
    "cafe": (("ring", "circle"), ("black", "white")),
    "bank": (("square", "triangle"), ("blue", "yellow")),
    "fight": (("star", "cross"), ("red", "black")),
    "shoplifting": (("triangle", "star"), ("purple", "green")),
    "road_accident": (("triangle", "cross"), ("orange", "red")),
}
JPEG_QUALITIES = (60, 75, 85, 95)
EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that stores an upright image so that exif_transpose undoes it.
_STORE_TRANSPOSE = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png"}


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; `box` is (x0, y0, x1, y1) in the upright image, x1/y1 exclusive."""

    shape: str
    colour: str
    size: str
    position: str
    box: tuple[int, int, int, int]
    class_id: int

    @property
    def phrase(self) -> str:
        """The object in words: "a large red circle at the top left"."""
        return f"a {self.size} {self.colour} {self.shape} at the {self.position}"


@dataclass(frozen=True)
class Scene:
    """The truth about one generated image; width/height are the upright (displayed) size."""

    name: str
    category: str
    caption: str
    objects: tuple[SceneObject, ...]
    width: int
    height: int
    format: str
    exif_rotated: bool
    backdrop: str = ""
    swap_of: str | None = None  # the scene this one is the attribute-swap twin of

    @property
    def filename(self) -> str:
        """The image's file name under `images/`."""
        return f"{self.name}.{_EXTENSIONS[self.format]}"


def caption_for(objects: Sequence[SceneObject], category: str) -> str:
    """The caption of a scene, written from its objects and category."""
    phrases = [obj.phrase for obj in objects]
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{listed}, {CATEGORY_PHRASES[category]}"


def scene_to_record(scene: Scene) -> dict:
    """The JSON-ready truth record of a scene."""
    record = asdict(scene)
    record["image"] = f"images/{scene.filename}"
    record["mask"] = f"masks/{scene.name}.png"
    return record


def scene_from_record(record: dict) -> Scene:
    """Rebuild a `Scene` from its truth record."""
    objects = tuple(
        SceneObject(
            shape=o["shape"],
            colour=o["colour"],
            size=o["size"],
            position=o["position"],
            box=tuple(o["box"]),
            class_id=o["class_id"],
        )
        for o in record["objects"]
    )
    return Scene(
        name=record["name"],
        category=record["category"],
        caption=record["caption"],
        objects=objects,
        width=record["width"],
        height=record["height"],
        format=record["format"],
        exif_rotated=record["exif_rotated"],
        backdrop=record.get("backdrop", ""),
        swap_of=record.get("swap_of"),
    )


def load_scenes(out_dir: Path) -> list[Scene]:
    """All scenes of a generated dataset, read back from `out_dir/truth/*.json`, by name."""
    paths = sorted((Path(out_dir) / "truth").glob("*.json"))
    return [scene_from_record(json.loads(p.read_text())) for p in paths]


# --------------------------------------------------------------------------- drawing


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


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_scene(category: str, index: int, seed: int = 0) -> tuple[Scene, bytes, bytes]:
    """One scene's truth, its image file bytes and its mask PNG bytes."""
    rendered = _render(category, index, seed)
    mask_buffer = BytesIO()
    rendered.mask.save(mask_buffer, "PNG")
    return rendered.scene, _encode(rendered), mask_buffer.getvalue()


def _generate_one(out_dir: Path, category: str, index: int, seed: int) -> Scene:
    scene, image_bytes, mask_bytes = render_scene(category, index, seed)
    record = json.dumps(scene_to_record(scene), indent=1, sort_keys=True) + "\n"
    _write_atomic(out_dir / "images" / scene.filename, image_bytes)
    _write_atomic(out_dir / "masks" / f"{scene.name}.png", mask_bytes)
    _write_atomic(out_dir / "truth" / f"{scene.name}.json", record.encode())
    return scene


def generate_dataset(
    out_dir: Path,
    categories: Sequence[str] = CATEGORIES,
    per_category: int = 64,
    seed: int = 0,
    workers: int | None = None,
) -> list[Scene]:
    """Draw `per_category` scenes per category into `out_dir/{images,truth,masks}`.

    Deterministic from `seed` (same bytes every time, any `workers`); files are written
    atomically, so concurrent runs over the same directory are safe. Returns the scenes in
    category order, then index order.
    """
    unknown = [c for c in categories if c not in CATEGORY_PHRASES]
    if unknown:
        raise ValueError(f"unknown categories: {unknown}")
    out_dir = Path(out_dir)
    for sub in ("images", "truth", "masks"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(c, i) for c in categories for i in range(per_category)]
    # Threads: numpy and Pillow's encoders release the GIL, and threads are safe to start
    # from any parent (Dagster run workers, the demo server); each scene has its own RNG.
    with ThreadPoolExecutor(workers or min(os.cpu_count() or 1, 8)) as pool:
        return list(pool.map(lambda job: _generate_one(out_dir, job[0], job[1], seed), jobs))


def write_link_files(
    scenes: Sequence[Scene], base_url: str, links_dir: Path, broken_per_category: int = 2
) -> dict[str, Path]:
    """Write `links_dir/<category>.txt`: one "<url>\\t<caption>" line per scene.

    Each file also lists `broken_per_category` broken links that `DemoServer` answers with a
    404 (`/missing/...`) or with an HTML page sent as image/jpeg (`/html/...`), alternately.
    Files are replaced atomically, so a watching sensor never reads half a file.
    """
    base_url = base_url.rstrip("/")
    links_dir = Path(links_dir)
    links_dir.mkdir(parents=True, exist_ok=True)
    by_category: dict[str, list[Scene]] = {}
    for scene in scenes:
        by_category.setdefault(scene.category, []).append(scene)
    written = {}
    for category, members in by_category.items():
        lines = [
            f"# featuregen synthetic demo: {category}, {len(members)} images"
            f" and {broken_per_category} deliberately broken links",
            "# <url> TAB <caption written from the scene's truth>",
        ]
        lines += [f"{base_url}/images/{s.filename}\t{s.caption}" for s in members]
        for k in range(broken_per_category):
            kind = "missing" if k % 2 == 0 else "html"
            lines.append(f"{base_url}/{kind}/{category}_broken_{k}.jpg")
        path = links_dir / f"{category}.txt"
        _write_atomic(path, ("\n".join(lines) + "\n").encode())
        written[category] = path
    return written


# --------------------------------------------------------------------------- queries

# A second phrasing: its content words (colours, shapes, sizes, places, categories) never occur
# in a training caption, so a query in it tests what an encoder understands, not what it read.
PARAPHRASE_COLOURS = {
    "red": "crimson",
    "green": "emerald",
    "blue": "navy",
    "yellow": "golden",
    "purple": "violet",
    "orange": "amber",
    "white": "ivory",
    "black": "jet",
}
PARAPHRASE_SHAPES = {
    "circle": "disc",
    "square": "block",
    "triangle": "wedge",
    "star": "pentagram",
    "cross": "plus",
    "ring": "hoop",
}
PARAPHRASE_SIZES = {"small": "little", "large": "big"}
PARAPHRASE_POSITIONS = {
    "top left": "upper left corner",
    "top right": "upper right corner",
    "bottom left": "lower left corner",
    "bottom right": "lower right corner",
    "centre": "middle",
}
PARAPHRASE_CATEGORIES = {
    "city_street": "on an urban road",
    "shop": "inside a store",
    "supermarket": "inside a grocery",
    "restaurant": "inside a diner",
    "cafe": "inside a coffeehouse",
    "bank": "inside a teller hall",
    "fight": "during a brawl",
    "shoplifting": "during a theft",
    "road_accident": "at a car crash",
}
QUERY_SETS = ("template", "paraphrase", "partial_object", "partial_attribute")


def paraphrase(scene: Scene) -> str:
    """The scene in the second phrasing: "big crimson disc in the upper left corner, ..."."""
    phrases = [
        f"{PARAPHRASE_SIZES[o.size]} {PARAPHRASE_COLOURS[o.colour]} "
        f"{PARAPHRASE_SHAPES[o.shape]} in the {PARAPHRASE_POSITIONS[o.position]}"
        for o in scene.objects
    ]
    return f"{' plus '.join(phrases)}, {PARAPHRASE_CATEGORIES[scene.category]}"


def _holders(scenes: Sequence[Scene], match) -> list[str]:
    return [s.name for s in scenes if any(match(o) for o in s.objects)]


def scene_queries(scenes: Sequence[Scene]) -> list[dict]:
    """Queries with their truth, one of each set per scene (by name; positives by name).

    template: the caption (positives: scenes with that caption); paraphrase: the second
    phrasing; partial_object: one object's phrase, no category ("a large red circle at the
    top left"; positives: every scene with that object); partial_attribute: colour and shape
    only ("a red circle"). `matches`: scenes holding every colour-shape pair the query names
    (for attribute-match precision); `hard_negative`: the attribute-swap twin, if any.
    `compositional`: the query names a held-out combination.
    """
    twins = {s.swap_of: s.name for s in scenes if s.swap_of}
    twins.update({s.name: s.swap_of for s in scenes if s.swap_of})
    by_caption: dict[str, list[str]] = {}
    for s in scenes:
        by_caption.setdefault(s.caption, []).append(s.name)
    pairs = {s.name: {(o.colour, o.shape) for o in s.objects} for s in scenes}

    def matches(wanted: set[tuple[str, str]]) -> list[str]:
        return [name for name, have in pairs.items() if wanted <= have]

    queries = []
    for s in scenes:
        first = s.objects[0]
        common = {"scene": s.name, "category": s.category, "hard_negative": twins.get(s.name)}
        entries = [
            ("template", s.caption, by_caption[s.caption], pairs[s.name]),
            ("paraphrase", paraphrase(s), by_caption[s.caption], pairs[s.name]),
            ("partial_object", first.phrase, _holders(scenes, first.__eq__), None),
            (
                "partial_attribute",
                f"a {first.colour} {first.shape}",
                _holders(scenes, lambda o, f=first: (o.colour, o.shape) == (f.colour, f.shape)),
                {(first.colour, first.shape)},
            ),
        ]
        for query_set, text, positives, wanted in entries:
            if query_set == "partial_object":
                positives = _holders(
                    scenes,
                    lambda o, f=first: (
                        (o.shape, o.colour, o.size, o.position)
                        == (f.shape, f.colour, f.size, f.position)
                    ),
                )
                wanted = {(first.colour, first.shape)}
            queries.append(
                {
                    **common,
                    "query_set": query_set,
                    "query": text,
                    "positives": positives,
                    "matches": matches(wanted),
                    "compositional": any(p in s.caption for p in HELD_OUT_COMBINATIONS)
                    and query_set in ("template", "paraphrase"),
                }
            )
    return queries


def example_queries(scenes: Sequence[Scene]) -> list[tuple[str, list[str]]]:
    """Two partial queries, without a category phrase, that the tiny models' data answers, each
    with the names of the scenes it should find: one large object's size, colour and shape
    ("a large red circle" when a scene holds one, else the first large object), then its
    colour and shape alone. Place is what the tiny DINOv2 keeps least (README, "Models")."""
    objects = [o for s in scenes for o in s.objects]
    large = [o for o in objects if o.size == "large"] or objects
    obj = next((o for o in large if (o.colour, o.shape) == ("red", "circle")), large[0])
    return [
        (
            f"a {obj.size} {obj.colour} {obj.shape}",
            _holders(
                scenes, lambda o: (o.size, o.colour, o.shape) == (obj.size, obj.colour, obj.shape)
            ),
        ),
        (
            f"a {obj.colour} {obj.shape}",
            _holders(scenes, lambda o: (o.colour, o.shape) == (obj.colour, obj.shape)),
        ),
    ]
