"""Training throughput (samples/s) of the aligned text encoder and the decoder, on random data.

CPU (default): the tiny profile's shapes (CLIP text tower hidden 64, 2 layers; 128-d vectors;
32px decoder). CUDA (--device cuda): the real architectures - clip-vit-base-patch32's text
tower (CLIPTextConfig defaults: hidden 512, 12 layers, vocab 49408) with random weights,
dinov2-base's 768-d vectors, a 64px decoder from 768-d input - under bf16 autocast, beside
the same runs in fp32 as the baseline. Both go through `train_alignment` / `train_decoder`
themselves; samples/s covers the optimiser loop only.

    python benchmarks/train.py [--device cuda] [--seconds 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featuregen_assets.core.training.alignment import AlignmentConfig  # noqa: E402
from featuregen_assets.core.training.alignment_training import train_alignment  # noqa: E402
from featuregen_assets.core.training.decoder import DecoderConfig, train_decoder  # noqa: E402
from featuregen_assets.demo.tiny_models import TINY_WORDS, ensure_tiny  # noqa: E402


def _text_tower(real: bool, home: Path) -> Path:
    """The tiny tower, or a random clip-vit-base-patch32 text tower with the tiny tokenizer."""
    tiny = ensure_tiny("text_tower", home)
    if not real:
        return tiny
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = CLIPTextConfig(  # defaults = openai/clip-vit-base-patch32's text tower
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out = home / "clip-b32-text"
    torch.manual_seed(0)
    CLIPTextModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _random_pairs(n: int, dim: int, seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(TINY_WORDS, size=rng.integers(8, 20))) for _ in range(n)]
    return texts, [f"img{i}" for i in range(n)], rng.normal(size=(n, dim)).astype(np.float32)


def _timed(run, seconds: float) -> dict:
    """Re-run with more steps until the optimiser loop takes about `seconds`; its metrics."""
    steps, m = 10, {}
    for _ in range(4):
        m = run(steps)
        if m["train_seconds"] >= 0.7 * seconds:
            break
        steps = max(steps + 1, int(steps * seconds / max(m["train_seconds"], 1e-3)))
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seconds", type=float, default=None, help="per measured run")
    parser.add_argument("--baseline-seconds", type=float, default=None, help="fp32 runs (cuda)")
    parser.add_argument("--real", action="store_true", help="real architectures (cuda: always)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--pairs", type=int, default=None, help="random (text, vector) pairs")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    real = cuda or args.real
    seconds = args.seconds or (30.0 if cuda else 10.0)
    baseline_seconds = args.baseline_seconds or (10.0 if cuda else seconds)
    home = Path(tempfile.mkdtemp(prefix="featuregen-train-bench-"))
    tower = _text_tower(real, home)
    dim = 768 if real else 128
    batch = args.batch or (256 if real else 64)
    texts, ids, vectors = _random_pairs(args.pairs or (20_000 if real else 2_000), dim)
    size = 64 if real else 32
    images = np.random.default_rng(1).integers(0, 256, (len(ids), size, size, 3), dtype=np.uint8)
    device = (
        torch.cuda.get_device_name(0)
        if cuda
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    shapes = "real (CLIP B/32 text tower, 768-d, 64px decoder)" if real else "tiny profile"
    print(f"device: {device}; torch {torch.__version__}; architectures: {shapes}; batch {batch}")
    quiet = lambda _m: None  # noqa: E731

    def align(recipe: str, autocast: bool):
        base = AlignmentConfig(
            recipe=recipe,
            epochs=10_000,
            batch_size=batch,
            lr=1e-4,
            device=args.device,
            autocast=autocast,
            eval_every=0,
            held_out_fraction=0.05,
        )
        return lambda steps: (
            train_alignment(
                texts, ids, vectors, tower, dataclasses.replace(base, max_steps=steps), log=quiet
            ).metrics
        )

    def decode(autocast: bool):
        base = DecoderConfig(
            image_size=size,
            base_channels=32 if real else 16,
            max_channels=256 if real else 128,
            convs_per_level=2 if real else 1,
            epochs=10_000,
            batch_size=batch,
            device=args.device,
            autocast=autocast,
            held_out_fraction=0.05,
        )
        return lambda steps: (
            train_decoder(
                vectors, images, ids, dataclasses.replace(base, max_steps=steps), log=quiet
            ).metrics
        )

    runs = [
        ("alignment lit (whole tower)", align("lit", True), seconds),
        ("alignment talk2dino (frozen tower)", align("talk2dino", True), seconds / 3),
        ("decoder", decode(True), seconds),
    ]
    if cuda:
        runs += [
            ("alignment lit, fp32 baseline", align("lit", False), baseline_seconds),
            ("decoder, fp32 baseline", decode(False), baseline_seconds),
        ]
    figures = {}
    for name, run, budget in runs:
        started = time.perf_counter()
        m = _timed(run, budget)
        figures[name] = m["samples_per_s"]
        print(
            f"{name}: {m['samples_per_s']:.0f} samples/s ({m['steps']} steps x {batch}, "
            f"{m['train_seconds']:.1f}s in the loop, {time.perf_counter() - started:.1f}s wall)"
        )
    lit = figures["alignment lit (whole tower)"]
    print(f"ratio talk2dino / lit: {figures['alignment talk2dino (frozen tower)'] / lit:.1f}x")
    shutil.rmtree(home, ignore_errors=True)
    if cuda:
        print(f"ratio lit bf16 / fp32: {lit / figures['alignment lit, fp32 baseline']:.2f}x")
        print(
            f"ratio decoder bf16 / fp32: "
            f"{figures['decoder'] / figures['decoder, fp32 baseline']:.2f}x"
        )


if __name__ == "__main__":
    main()
