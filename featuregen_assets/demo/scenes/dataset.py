"""A generated dataset on disk (`images/`, `truth/`, `masks/`) and the link files that point to
it, all written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from featuregen_assets.demo.scenes.drawing import render_scene
from featuregen_assets.demo.scenes.truth import (
    CATEGORIES,
    CATEGORY_PHRASES,
    Scene,
    scene_to_record,
)


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
