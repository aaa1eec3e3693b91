"""Standard caption datasets as link files and query sets: the harness for real data.

Reads COCO captions (`captions_*.json`: `images` with `file_name`, `annotations` with
`image_id` and `caption`), Karpathy splits (`dataset_coco.json`, `dataset_flickr30k.json`:
`images` with `filepath`/`filename`, `split`, `sentences[].raw`) or Flickr30k's token file
(`results_20130124.token`: `<file>#<n>\t<caption>`). Each image becomes one link line
(`<base_url>/<relative path>\t<first caption>`, the folder served over HTTP) and every caption a
template query whose positive is that image's id (sha256 of its bytes), so `featuregen report`
scores text -> image retrieval on the standard split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

FORMATS = ("coco", "karpathy", "flickr30k-token")


@dataclass(frozen=True)
class CaptionedImage:
    """One image of a caption dataset: its path relative to the image folder, its captions."""

    path: str
    captions: tuple[str, ...]
    split: str | None = None


def read_dataset(annotations: Path, fmt: str) -> list[CaptionedImage]:
    """The images of an annotation file, in file order."""
    if fmt == "coco":
        data = json.loads(annotations.read_text())
        captions: dict[int, list[str]] = {}
        for a in data["annotations"]:
            captions.setdefault(a["image_id"], []).append(a["caption"].strip())
        return [
            CaptionedImage(i["file_name"], tuple(captions.get(i["id"], ()))) for i in data["images"]
        ]
    if fmt == "karpathy":
        data = json.loads(annotations.read_text())
        return [
            CaptionedImage(
                "/".join(p for p in (i.get("filepath", ""), i["filename"]) if p),
                tuple(s["raw"].strip() for s in i["sentences"]),
                i.get("split"),
            )
            for i in data["images"]
        ]
    if fmt == "flickr30k-token":
        by_file: dict[str, list[str]] = {}
        for number, line in enumerate(annotations.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, caption = line.partition("\t")
            if not sep:
                raise ValueError(f"{annotations}:{number}: expected '<file>#<n> TAB <caption>'")
            by_file.setdefault(key.split("#", 1)[0], []).append(caption.strip())
        return [CaptionedImage(f, tuple(c)) for f, c in by_file.items()]
    raise ValueError(f"unknown format {fmt!r}: expected one of {FORMATS}")


def select(
    images: Iterable[CaptionedImage], split: str | None, limit: int | None
) -> list[CaptionedImage]:
    """Images of `split` (Karpathy's train/restval/val/test; None: all) with a caption."""
    chosen = [i for i in images if i.captions and (split is None or i.split == split)]
    return chosen[:limit] if limit else chosen


def write_harness(
    images: list[CaptionedImage],
    image_dir: Path,
    base_url: str,
    category: str,
    links_dir: Path,
    query_file: Path,
) -> tuple[Path, Path, list[str]]:
    """Write `<category>.txt` and the query file; returns them and the missing image files."""
    base_url = base_url.rstrip("/")
    lines = [f"# {category}: imported captions, {len(images)} images", "# <url> TAB <caption>"]
    queries, missing = [], []
    for image in images:
        path = image_dir / image.path
        if not path.is_file():
            missing.append(image.path)
            continue
        image_id = hashlib.sha256(path.read_bytes()).hexdigest()
        caption = " ".join(image.captions[0].split())
        lines.append(f"{base_url}/{quote(image.path)}\t{caption}")
        queries += [
            json.dumps(
                {
                    "query_set": "template",
                    "query": " ".join(text.split()),
                    "positives": [image_id],
                    "image_id": image_id,
                    "category": category,
                }
            )
            for text in image.captions
        ]
    links_dir.mkdir(parents=True, exist_ok=True)
    query_file.parent.mkdir(parents=True, exist_ok=True)
    link_file = links_dir / f"{category}.txt"
    link_file.write_text("\n".join(lines) + "\n")
    query_file.write_text("\n".join(queries) + "\n")
    return link_file, query_file, missing
