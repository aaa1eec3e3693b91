"""What a model step's checkpoint costs: `RowCheckpoint` writes ÷ one `np.save` of the same array.

    python benchmarks/checkpoint.py                       # 100,000 rows of 768-d vectors
    python benchmarks/checkpoint.py --n 20000 --dim 1536 --embed-rate 3600

Each round holds ``--n`` (image id, vector) rows in a fresh checkpoint and flushes them as one
chunk (``every_s`` 30 makes one chunk of 30 s of rows), then takes them back in a new checkpoint
(`resume`: read, and rewritten as the resuming run's chunk). The baseline, in the same rounds,
is ``np.save`` of the vectors as one array (no ids, no fsync): the floor of writing them at all.
Best of ``--rounds``. ``--embed-rate`` (images/s of the embedding step, e.g. an H100's from
RESULTS.md) turns the write rate into the share of the step's time the checkpoint adds.
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

sys.path[0] = str(Path(__file__).resolve().parents[1])  # as benchmarks/vector_store.py does

from featuregen_assets.core.runtime.checkpoint import RowCheckpoint  # noqa: E402

NAMES = ("image_id", "embedding")


def one_round(root: Path, ids: list[str], vectors: np.ndarray) -> dict[str, float]:
    """Seconds to hold and flush, to resume, and to np.save the same vectors."""
    checkpoint = RowCheckpoint(root / "step", NAMES, run_id="writer", every_s=float("inf"))
    start = time.perf_counter()
    for image_id, vector in zip(ids, vectors, strict=True):
        checkpoint.add((image_id, vector))
    checkpoint.flush()
    write_s = time.perf_counter() - start

    start = time.perf_counter()
    resumed = RowCheckpoint(root / "step", NAMES, run_id="resumer").resume(set(ids))
    resume_s = time.perf_counter() - start
    assert resumed == len(ids)

    start = time.perf_counter()
    np.save(root / "plain.npy", vectors)
    save_s = time.perf_counter() - start
    for path in root.rglob("*.np*"):
        path.unlink()
    return {"write": write_s, "resume": resume_s, "save": save_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embed-rate", type=float, default=None, help="images/s of the step")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()

    vectors = np.random.default_rng(0).standard_normal((args.n, args.dim)).astype(np.float32)
    ids = [f"{i:064x}" for i in range(args.n)]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rounds = [one_round(Path(tmp), ids, vectors) for _ in range(args.rounds)]
    best = {key: min(r[key] for r in rounds) for key in rounds[0]}

    mb = vectors.nbytes / 1e6
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"{cpu}, {args.n:,} rows × {args.dim}-d ({mb:.0f} MB), best of {args.rounds}")
    print(f"checkpoint write  {best['write']:.3f} s  {args.n / best['write']:>12,.0f} rows/s")
    print(f"np.save baseline  {best['save']:.3f} s  {args.n / best['save']:>12,.0f} rows/s")
    print(f"write ÷ baseline time: {best['write'] / best['save']:.2f}")
    print(f"resume            {best['resume']:.3f} s  {args.n / best['resume']:>12,.0f} rows/s")
    if args.embed_rate:
        share = args.embed_rate / (args.n / best["write"])
        print(f"at {args.embed_rate:,.0f} images/s the checkpoint adds {share:.1%} to the step")


if __name__ == "__main__":
    main()
