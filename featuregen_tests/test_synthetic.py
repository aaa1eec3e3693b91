"""Synthetic scenes: determinism, truth consistency (caption, record, mask, pixels), link files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from featuregen_assets.core.ingest.links import parse_link_file
from featuregen_assets.demo.scenes import (
    BACKDROPS,
    CATEGORIES,
    CATEGORY_PHRASES,
    CLASS_NAMES,
    COLOURS,
    EXIF_ORIENTATION_TAG,
    HELD_OUT_COMBINATIONS,
    QUERY_SETS,
    SIZES,
    example_queries,
    generate_dataset,
    load_scenes,
    render_scene,
    scene_queries,
    write_link_files,
)
from featuregen_assets.demo.tiny_models import TINY_WORDS

PER_CATEGORY = 7  # index 5 is the EXIF-rotated slot


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("synthetic")
    return out, generate_dataset(out, per_category=PER_CATEGORY, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_files_in_any_worker_count(dataset, tmp_path: Path) -> None:
    out, scenes = dataset
    again = generate_dataset(tmp_path / "again", per_category=PER_CATEGORY, seed=3, workers=1)
    assert again == scenes
    assert _files(tmp_path / "again") == _files(out)
    assert len(_files(out)) == 3 * len(CATEGORIES) * PER_CATEGORY


def test_other_seed_gives_other_scenes() -> None:
    assert render_scene("bank", 0, seed=0) != render_scene("bank", 0, seed=1)


def test_truth_records_round_trip_and_names_are_unique(dataset) -> None:
    out, scenes = dataset
    assert load_scenes(out) == sorted(scenes, key=lambda s: s.name)
    assert len({s.name for s in scenes}) == len(scenes)


def test_captions_describe_the_objects(dataset) -> None:
    _, scenes = dataset
    phrase = re.compile(
        r"a (small|large) (\w+) (\w+) at the (top left|top right|bottom left|bottom right|centre)"
    )
    for scene in scenes:
        listed, _, where = scene.caption.rpartition(", ")
        assert where == CATEGORY_PHRASES[scene.category]
        found = phrase.findall(listed)
        assert found == [(o.size, o.colour, o.shape, o.position) for o in scene.objects]
        assert 1 <= len(scene.objects) <= 3
        assert len({o.position for o in scene.objects}) == len(scene.objects)


def test_mask_labels_match_boxes_and_are_large_enough(dataset) -> None:
    out, scenes = dataset
    for scene in scenes:
        mask = np.asarray(Image.open(out / "masks" / f"{scene.name}.png"))
        assert mask.shape == (scene.height, scene.width)
        assert set(np.unique(mask)) == {0} | {o.class_id for o in scene.objects}
        for obj in scene.objects:
            assert CLASS_NAMES[obj.class_id] == obj.shape
            x0, y0, x1, y1 = obj.box
            ys, xs = np.nonzero(mask[y0:y1, x0:x1] == obj.class_id)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (0, 0, x1 - x0, y1 - y0)
            side = max(x1 - x0, y1 - y0) / min(scene.width, scene.height)
            assert side >= 0.9 * SIZES[obj.size] and side >= 0.15


def test_upright_pixels_show_the_objects_colours(dataset) -> None:
    out, scenes = dataset
    for scene in scenes:
        with Image.open(out / "images" / scene.filename) as stored:
            assert stored.format == scene.format
            orientation = stored.getexif().get(EXIF_ORIENTATION_TAG, 1)
            assert (orientation != 1) == scene.exif_rotated
            upright = ImageOps.exif_transpose(stored).convert("RGB")
        assert upright.size == (scene.width, scene.height)
        pixels = np.asarray(upright, dtype=np.float32)
        mask = np.asarray(Image.open(out / "masks" / f"{scene.name}.png"))
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            inside = mask[y0:y1, x0:x1] == obj.class_id
            mean = pixels[y0:y1, x0:x1][inside].mean(axis=0)
            assert np.abs(mean - COLOURS[obj.colour]).max() < 40, (scene.name, obj)


def test_dataset_has_realistic_variety(dataset) -> None:
    _, scenes = dataset
    assert {s.format for s in scenes} == {"JPEG", "PNG"}
    rotated = [s for s in scenes if s.exif_rotated]
    assert rotated and all(s.format == "JPEG" for s in rotated)
    sides = [min(s.width, s.height) for s in scenes]
    assert min(sides) >= 224 and max(max(s.width, s.height) for s in scenes) <= 1200
    assert len({(s.width, s.height) for s in scenes}) > len(scenes) // 2


def test_link_files_parse_with_captions_and_broken_links(dataset, tmp_path: Path) -> None:
    _, scenes = dataset
    base = "http://127.0.0.1:8765"
    written = write_link_files(scenes, base + "/", tmp_path / "links", broken_per_category=3)
    assert set(written) == set(CATEGORIES)
    for category, path in written.items():
        parsed = parse_link_file(path)
        assert parsed.category == category
        assert not parsed.report.skipped.total and not parsed.report.duplicates.total
        members = [s for s in scenes if s.category == category]
        expected = [(f"{base}/images/{s.filename}", s.caption) for s in members]
        assert [(link.url, link.caption) for link in parsed.links[: len(members)]] == expected
        broken = parsed.links[len(members) :]
        assert [link.url.split("/")[3] for link in broken] == ["missing", "html", "missing"]
        assert all(link.caption is None for link in broken)
    assert not [p for p in (tmp_path / "links").iterdir() if p.suffix != ".txt"]


def test_unknown_category_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown categories"):
        generate_dataset(tmp_path, categories=["beach"], per_category=1)


def test_v2_backdrops_are_shared_and_swap_twins_exchange_colours(dataset) -> None:
    _, scenes = dataset
    categories_per_backdrop: dict[str, set[str]] = {}
    for s in scenes:
        categories_per_backdrop.setdefault(s.backdrop, set()).add(s.category)
    assert set(categories_per_backdrop) <= set(BACKDROPS)
    assert sum(len(c) >= 2 for c in categories_per_backdrop.values()) >= 4
    by_name = {s.name: s for s in scenes}
    twins = [s for s in scenes if s.swap_of]
    assert twins
    for twin in twins:
        original = by_name[twin.swap_of]
        assert twin.backdrop == original.backdrop and twin.caption != original.caption
        assert [(o.shape, o.size, o.position) for o in twin.objects] == [
            (o.shape, o.size, o.position) for o in original.objects
        ]
        assert sorted(o.colour for o in twin.objects) == sorted(o.colour for o in original.objects)


def test_query_sets_hold_their_truth_and_paraphrases_share_no_content_word(dataset) -> None:
    _, scenes = dataset
    queries = scene_queries(scenes)
    assert {q["query_set"] for q in queries} == set(QUERY_SETS)
    training_words = {w for s in scenes for w in re.findall(r"[a-z]+", s.caption)}
    content = set(COLOURS) | set(SIZES) | {"circle", "square", "triangle", "star", "cross"}
    for q in queries:
        assert q["scene"] in q["positives"] and set(q["positives"]) <= set(q["matches"] or [])
        if q["query_set"] == "paraphrase":
            words = set(re.findall(r"[a-z]+", q["query"]))
            assert not words & content and not words & set(HELD_OUT_COMBINATIONS)
            assert words - training_words
    vocabulary = set(TINY_WORDS)
    assert {w for q in queries for w in re.findall(r"[a-z]+", q["query"])} <= vocabulary
    (one, one_names), (pair, pair_names) = example_queries(scenes)
    captions = {s.name: s.caption for s in scenes}
    assert one == "a large red circle" and pair == "a red circle"
    assert one_names and all(one.removeprefix("a ") in captions[n] for n in one_names)
    assert pair_names and all(pair.removeprefix("a ") in captions[n] for n in pair_names)
    assert set(one_names) < set(pair_names)
