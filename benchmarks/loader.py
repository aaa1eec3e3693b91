"""How many images/s the main process can take from loader workers.

Decoded pixels. Baseline: the usual DataLoader whose workers return each chunk as a pixel
tensor (PyTorch moves it through a fresh shared-memory segment). featuregen: workers write
into the fixed shared-memory slots of a `PixelRing` and return indices (`core/pixel_ring.py`);
each chunk is read onto the device (a copy on the CPU) in both.
Encoded JPEGs (for nvJPEG). Baseline: workers return the bytes as arrays (pickled through a
pipe). featuregen: workers put the bytes in the same slots and return their length; the main
process copies them out. A JPEG larger than a slot (a 1 MB photo): workers return only its
path and the consumer reads the file (in featuregen, the device-decode thread).
Workers only copy ready data (a 224 × 224 image, a 60 kB JPEG-sized blob, a 1 MB file), so
the main process is the bottleneck and the figures are its ceiling.

    python benchmarks/loader.py                 # CPU, 1 worker per spare CPU
    python benchmarks/loader.py --device cuda   # page-locked slots, asynchronous copies
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featuregen_assets.core.vision.pixel_ring import (  # noqa: E402
    PixelRing,
    put_bytes,
    put_pixels,
    read_chunks,
    ring_slots,
)

SHAPE = (224, 224, 3)
IMAGE = np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
JPEG = IMAGE.tobytes()[:60_000]  # the size of the embed benchmark's mean JPEG
PHOTO = np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8)  # a 1 MB photo


class Items(Dataset):
    """``n`` items, each made by ``make(index)`` in a loader worker."""

    def __init__(self, n: int, make):
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.make(i)


def items_per_s(n: int, chunks, consume) -> float:
    """Images/s of taking every chunk from ``chunks`` and passing it to ``consume``."""
    t0 = time.perf_counter()
    for chunk in chunks:
        consume(chunk)
    return n / (time.perf_counter() - t0)


def loader(n: int, make, collate, workers: int, chunk: int) -> DataLoader:
    return DataLoader(
        Items(n, make), batch_size=chunk, num_workers=workers, collate_fn=collate, prefetch_factor=4
    )


def pixel_tensors(n: int, workers: int, chunk: int, device: torch.device) -> float:
    def collate(items):
        return torch.from_numpy(np.stack(items))

    def to_device(pixels: torch.Tensor) -> None:
        if device.type == "cuda":
            pixels.pin_memory().to(device, non_blocking=True)
        else:
            pixels.clone()

    chunks = loader(n, lambda i: IMAGE.copy(), collate, workers, chunk)
    rate = items_per_s(n, chunks, to_device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return rate


def pixel_slots(n: int, workers: int, chunk: int, device: torch.device) -> float:
    ring = PixelRing(ring_slots(chunk, 256, 4 * workers), SHAPE, device)

    def make(i: int) -> int:
        put_pixels(ring.pixels, i, IMAGE)
        return i

    chunks = loader(n, make, lambda items: (list(items),), workers, chunk)
    return items_per_s(n, read_chunks(chunks, ring), lambda chunk: None)  # read on arrival


def jpeg_arrays(n: int, workers: int, chunk: int, device: torch.device) -> float:
    chunks = loader(n, lambda i: np.frombuffer(JPEG, np.uint8).copy(), list, workers, chunk)
    return items_per_s(n, chunks, lambda blobs: [torch.from_numpy(b) for b in blobs])


def jpeg_slots(n: int, workers: int, chunk: int, device: torch.device) -> float:
    ring = PixelRing(ring_slots(chunk, 256, 4 * workers), SHAPE, device)

    def make(i: int) -> int:
        put_bytes(ring.pixels, i, JPEG)
        return i

    def copy_out(chunk) -> None:
        _, _, indices = chunk  # no pixels: every item is a JPEG in its slot
        [torch.from_numpy(ring.bytes(i, len(JPEG))) for i in indices]

    chunks = loader(n, make, lambda items: ([], list(items)), workers, chunk)
    return items_per_s(n, read_chunks(chunks, ring), copy_out)


def photo_arrays(n: int, workers: int, chunk: int, device: torch.device) -> float:
    chunks = loader(n, lambda i: PHOTO.copy(), list, workers, chunk)
    return items_per_s(n, chunks, lambda blobs: [torch.from_numpy(b) for b in blobs])


def photo_files(n: int, workers: int, chunk: int, device: torch.device) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        PHOTO.tofile(path)
        chunks = loader(n, lambda i: str(path), list, workers, chunk)
        return items_per_s(
            n, chunks, lambda paths: [torch.from_numpy(np.fromfile(p, np.uint8)) for p in paths]
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=32768)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; best of each")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(1)
    pairs = [
        ("pixels", pixel_tensors, pixel_slots),
        ("encoded JPEGs", jpeg_arrays, jpeg_slots),
        ("1 MB JPEGs (arrays / paths, file read by the consumer)", photo_arrays, photo_files),
    ]
    best = {name: [0.0, 0.0] for name, _, _ in pairs}
    for _ in range(args.rounds):
        for name, baseline, ours in pairs:
            for k, run in enumerate((baseline, ours)):
                rate = run(args.images, args.workers, args.chunk, device)
                best[name][k] = max(best[name][k], rate)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}; "
        f"{args.images} items, {args.workers} workers, chunks of {args.chunk}"
    )
    print("| data | DataLoader (tensors / pickled arrays) img/s | featuregen img/s | ratio |")
    print("|---|---|---|---|")
    for name, (baseline, ours) in best.items():
        print(f"| {name} | {baseline:,.0f} | {ours:,.0f} | {ours / baseline:.2f} |")


if __name__ == "__main__":
    main()
