"""How much of the demo's scenes the tiny DINOv2's CLS vector keeps: the old build against today's.

    python benchmarks/tiny_dinov2.py [--per-category 64] [--seed 1]

Embeds scenes of `--seed` (default 1: no image of the demo or of the report scale, whose scenes
are seed 0, so the build is judged outside their test split; seed 0 repeats the measurement the
build was first chosen on) with the old tiny build (hidden 64, 4 layers, 224 px, weights at std
0.02) and with today's (`demo.tiny_models`), plus 8 x 8 raw pixels as a reference. For each, a
ridge read-out maps the scene truth (colour, shape and size one-hots at each of the five places)
to the image vectors, as a perfect text encoder would; each query is the read-out of its
objects' truth. Prints, per kind of query, the share whose first matching image is in the top 5
of all images, and the cosine between an image's vector and its JPEG-70 copy's (stability).
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featuregen_assets.core.vision.preprocess import CropResize, open_rgb  # noqa: E402
from featuregen_assets.demo import scenes as S  # noqa: E402
from featuregen_assets.demo.tiny_models import ensure_tiny  # noqa: E402

OLD = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256)


def truth(objects) -> np.ndarray:
    """Colour, shape and size one-hots at each of the five places."""
    places, colours, shapes = list(S.POSITIONS), list(S.COLOURS), list(S.SHAPES)
    width = len(colours) + len(shapes) + len(S.SIZES)
    row = np.zeros(len(places) * width, np.float32)
    for o in objects:
        base = places.index(o.position) * width
        row[base + colours.index(o.colour)] = 1
        row[base + len(colours) + shapes.index(o.shape)] = 1
        row[base + len(colours) + len(shapes) + list(S.SIZES).index(o.size)] = 1
    return row


KINDS = {
    "template": "whole caption",
    "partial_object": "one object",
    "partial_attribute": "colour and shape",
}


def query_truth(query_set: str, scene) -> np.ndarray:
    """What a query of `query_set` about `scene` names, as `truth` rows: the whole scene, its
    first object, or that object's colour and shape at any place and size (the mean)."""
    first = scene.objects[0]
    if query_set == "template":
        return truth(scene.objects)
    if query_set == "partial_object":
        return truth([first])
    anywhere = [
        S.SceneObject(first.shape, first.colour, size, place, (0, 0, 0, 0), 0)
        for place in S.POSITIONS
        for size in S.SIZES
    ]
    return np.mean([truth([o]) for o in anywhere], axis=0)


def top5_shares(vectors: np.ndarray, scenes) -> dict[str, float]:
    """Per kind of query (`scene_queries`' sets, each distinct query once): the share whose
    first matching image ranks in the top 5."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    mean = unit.mean(0)
    design = np.stack([truth(s.objects) for s in scenes])
    readout = np.linalg.solve(design.T @ design + np.eye(design.shape[1]), design.T @ (unit - mean))
    index = {s.name: i for i, s in enumerate(scenes)}
    firsts: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    for q in S.scene_queries(scenes):
        ranked = firsts.get(q["query_set"])
        if ranked is None or q["query"] in ranked:
            continue
        query = query_truth(q["query_set"], scenes[index[q["scene"]]])
        order = np.argsort(-(unit @ (query @ readout + mean)))
        wanted = {index[name] for name in q["positives"]}
        ranked[q["query"]] = next(r for r, i in enumerate(order, 1) if i in wanted)
    return {KINDS[k]: float(np.mean(np.array(list(r.values())) <= 5)) for k, r in firsts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1, help="scenes (0: the demo's own)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from transformers import Dinov2Config, Dinov2Model

    work = Path(tempfile.mkdtemp(prefix="featuregen-tiny-dinov2-"))
    scenes = S.generate_dataset(work / "site", S.CATEGORIES, args.per_category, seed=args.seed)
    files = [work / "site" / "images" / s.filename for s in scenes]
    torch.manual_seed(0)
    old = Dinov2Model(Dinov2Config(patch_size=14, image_size=224, **OLD)).eval()
    today = Dinov2Model.from_pretrained(ensure_tiny("image_embedder", work / "models")).eval()
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]

    def pixels(images: list[Image.Image], side: int) -> torch.Tensor:
        crop = CropResize(side * 8 // 7, None, (side, side), int(Image.Resampling.BICUBIC))
        x = torch.stack([torch.tensor(crop(im)).permute(2, 0, 1).float() for im in images])
        return (x / 255 - mean) / std

    def jpeg70(path: Path) -> Image.Image:
        buffer = io.BytesIO()
        open_rgb(path).save(buffer, "JPEG", quality=70)
        return Image.open(buffer).convert("RGB")

    originals = [open_rgb(p) for p in files]
    copies = [jpeg70(p) for p in files[:64]]
    rows = []
    for name, model, side in (
        ("old tiny (64 wide, 4 layers, 224 px, std 0.02)", old, 224),
        ("today's tiny (384 wide, 2 layers, 112 px, std 0.2)", today, 112),
    ):
        started = time.perf_counter()
        with torch.inference_mode():
            vectors = torch.cat(
                [
                    model(pixel_values=pixels(originals[i : i + 64], side)).last_hidden_state[:, 0]
                    for i in range(0, len(originals), 64)
                ]
            )
            again = model(pixel_values=pixels(copies, side)).last_hidden_state[:, 0]
        seconds = time.perf_counter() - started
        stability = F.cosine_similarity(vectors[: len(copies)], again).numpy()
        rows.append((name, top5_shares(vectors.numpy(), scenes), stability, seconds))
    raw = F.adaptive_avg_pool2d(pixels(originals, 112), 8).reshape(len(originals), -1).numpy()
    rows.append(
        ("raw pixels, 8 x 8 (reference)", top5_shares(raw - raw.mean(0), scenes), None, 0.0)
    )

    print(
        f"{len(scenes)} scenes of seed {args.seed}, {platform.processor() or platform.machine()},"
        " 1 torch thread"
    )
    print(
        "| image vector | whole caption | one object | colour and shape"
        " | JPEG-70 cosine min / mean | embed s |"
    )
    print("|---|---|---|---|---|---|")
    base = rows[0][1]
    for name, shares, stability, seconds in rows:
        cells = [f"{shares[k]:.2f} ({shares[k] / max(base[k], 1e-9):.1f}x)" for k in shares]
        stable = "—" if stability is None else f"{stability.min():.3f} / {stability.mean():.3f}"
        timing = f"{seconds:.1f}" if seconds else "—"
        print(f"| {name} | {' | '.join(cells)} | {stable} | {timing} |")


if __name__ == "__main__":
    main()
