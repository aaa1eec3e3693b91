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

The package's modules: `truth` (the vocabulary, `Scene` and its JSON record), `drawing` (one
scene's image and mask from (seed, category, index)), `dataset` (a dataset and its link files
on disk) and `queries` (queries with their truth, in the captions' phrasing and a second one).
"""

from featuregen_assets.demo.scenes.dataset import generate_dataset, write_link_files
from featuregen_assets.demo.scenes.drawing import (
    EXIF_ORIENTATION_TAG,
    JPEG_QUALITIES,
    render_scene,
)
from featuregen_assets.demo.scenes.queries import (
    QUERY_SETS,
    example_queries,
    paraphrase,
    scene_queries,
)
from featuregen_assets.demo.scenes.truth import (
    BACKDROPS,
    CATEGORIES,
    CATEGORY_PHRASES,
    CLASS_NAMES,
    COLOURS,
    HELD_OUT_COMBINATIONS,
    POSITIONS,
    SHAPES,
    SIZES,
    SWAP_EVERY,
    TYPICAL,
    Scene,
    SceneObject,
    caption_for,
    load_scenes,
    scene_from_record,
    scene_to_record,
)

__all__ = [
    "BACKDROPS",
    "CATEGORIES",
    "CATEGORY_PHRASES",
    "CLASS_NAMES",
    "COLOURS",
    "EXIF_ORIENTATION_TAG",
    "HELD_OUT_COMBINATIONS",
    "JPEG_QUALITIES",
    "POSITIONS",
    "QUERY_SETS",
    "SHAPES",
    "SIZES",
    "SWAP_EVERY",
    "TYPICAL",
    "Scene",
    "SceneObject",
    "caption_for",
    "example_queries",
    "generate_dataset",
    "load_scenes",
    "paraphrase",
    "render_scene",
    "scene_from_record",
    "scene_queries",
    "scene_to_record",
    "write_link_files",
]
