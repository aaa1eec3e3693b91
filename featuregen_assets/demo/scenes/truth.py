"""The scenes' vocabulary (categories, shapes, colours, sizes, places, backdrops), the truth
about one scene (`Scene`, `SceneObject`), its caption and its JSON record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

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
