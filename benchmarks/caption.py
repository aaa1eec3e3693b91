"""Batched ÷ one-at-a-time captioning throughput, same model, settings, device and run.

The model is the Qwen2-VL-2B-Instruct architecture with random weights (no hub here; the
config below is the checkpoint's), or the tiny profile. ``min_new_tokens = max_new_tokens``
fixes the work per image, so the ratio measures batching alone.

    python benchmarks/caption.py --device cpu            # tiny: proves the path works
    python benchmarks/caption.py --device cuda           # Qwen2-VL-2B architecture, bf16
    python benchmarks/caption.py --device cuda --stages --profile   # where a batch's time goes

``--stages`` splits one batch's ``generate`` into the first token (vision tower and prefill)
and each decode step after it; ``--profile`` prints torch.profiler's busiest operators.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.embed import machine, write_images  # noqa: E402
from featuregen_assets.core.vision.captioning import Captioner, CaptionSettings  # noqa: E402
from featuregen_assets.core.vision.compute import ComputeSettings  # noqa: E402
from featuregen_assets.core.vision.model_profiles import ModelSpec  # noqa: E402
from featuregen_assets.core.vision.preprocess import open_rgb  # noqa: E402
from featuregen_assets.demo.tiny_models import ensure_tiny  # noqa: E402

# Qwen/Qwen2-VL-2B-Instruct config.json (token ids are remapped to the tiny tokenizer's).
QWEN2VL_2B = {
    "hidden_act": "silu",
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "num_attention_heads": 12,
    "num_hidden_layers": 28,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vision_config": {
        "depth": 32,
        "embed_dim": 1280,
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_chans": 3,
        "hidden_size": 1536,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}


def build_2b(root: Path, device: str) -> ModelSpec:
    """Save a random-weight Qwen2-VL-2B (bf16) with the tiny tokenizer and processor files."""
    from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tiny = ensure_tiny("captioner", root)
    tok = AutoTokenizer.from_pretrained(tiny)
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in (
            "<|endoftext|>",
            "<|im_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|image_pad|>",
            "<|video_pad|>",
        )
    }
    config = Qwen2VLConfig(
        **QWEN2VL_2B,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    out = root / "qwen2vl-2b"
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    del model
    for f in tiny.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, out)
    return ModelSpec("captioner", str(out), "random/qwen2vl-2b")


def rate(captioner: Captioner, paths: list[Path], batch: int) -> tuple[float, list]:
    """images/s captioning ``paths`` in batches of ``batch``; and the rows."""
    captioner.compute = dataclasses.replace(captioner.compute, batch_size=batch)
    if captioner.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    rows = list(captioner.caption_files(paths))
    return len(paths) / (time.perf_counter() - t0), rows


def one_batch_inputs(captioner: Captioner, paths: list[Path]) -> dict:
    """Model inputs of one batch of ``paths``, prepared as the loader does."""
    processed = captioner.image_processor(
        images=[open_rgb(p) for p in paths], size=captioner.size, return_tensors="pt"
    )
    return captioner.inputs(processed["pixel_values"], processed["image_grid_thw"])


def stages(captioner: Captioner, inputs: dict, rounds: int = 2) -> dict:
    """Where one batch's time goes: the first token (vision tower + prefill) and each new token
    after it (decode steps), best of ``rounds``."""
    settings = captioner.settings

    def generate_s(new_tokens: int) -> float:
        captioner.settings = dataclasses.replace(
            settings, max_new_tokens=new_tokens, min_new_tokens=new_tokens
        )
        sync(captioner.device)
        t0 = time.perf_counter()
        captioner.generate(inputs)
        sync(captioner.device)
        return time.perf_counter() - t0

    try:
        generate_s(2)  # warm-up
        first = min(generate_s(1) for _ in range(rounds))
        full = min(generate_s(settings.max_new_tokens) for _ in range(rounds))
    finally:
        captioner.settings = settings
    return {
        "batch": len(inputs["image_grid_thw"]),
        "prompt_tokens": inputs["input_ids"].shape[1],
        "first_token_s": round(first, 4),
        "per_new_token_ms": round((full - first) / (settings.max_new_tokens - 1) * 1000, 2),
        "generate_s": round(full, 4),
    }


def profile(captioner: Captioner, inputs: dict, rows: int = 25) -> str:
    """torch.profiler's busiest operators over one batch's ``generate``."""
    from torch.profiler import ProfilerActivity

    cuda = captioner.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        captioner.generate(inputs)
        sync(captioner.device)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", choices=["tiny", "qwen2vl-2b"])
    p.add_argument("--images", type=int, help="images captioned in batches")
    p.add_argument("--single", type=int, help="images captioned one at a time")
    p.add_argument("--batch", type=int)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--stages", action="store_true", help="time one batch's first token and decode steps"
    )
    p.add_argument("--profile", action="store_true", help="torch.profiler table of one batch")
    args = p.parse_args()
    gpu = args.device.startswith("cuda")
    args.arch = args.arch or ("qwen2vl-2b" if gpu else "tiny")
    args.images = args.images or (256 if gpu else 16)
    args.single = args.single or (12 if gpu else 8)
    args.batch = args.batch or (64 if gpu else 8)
    settings = CaptionSettings(
        max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_images(root / "images", args.images)
        t0 = time.perf_counter()
        if args.arch == "tiny":
            spec = ModelSpec("captioner", str(ensure_tiny("captioner", root)), "tiny/qwen2vl")
        else:
            spec = build_2b(root, "cuda" if gpu else "cpu")
        captioner = Captioner(
            spec, ComputeSettings(device=args.device, num_workers=4 if gpu else 2), settings
        )
        print(f"model ready in {time.perf_counter() - t0:.1f}s; {machine()}")
        rate(captioner, paths[:2], 2)  # warm-up
        single, single_rows = rate(captioner, paths[: args.single], 1)
        batched, rows = rate(captioner, paths, args.batch)
        full_length = sum(1 for r in rows if r[3]) / len(rows)
        empty = sum(1 for r in rows if not r[1])
        if args.stages or args.profile:
            inputs = one_batch_inputs(captioner, paths[: args.batch])
            breakdown = stages(captioner, inputs) if args.stages else None
            if breakdown:
                print("stages:", json.dumps(breakdown))
            if args.profile:
                print(profile(captioner, inputs))
        captioner.close()
    result = {
        "arch": args.arch,
        "device": str(captioner.device),
        "dtype": str(captioner.dtype).split(".")[-1],
        "batch": args.batch,
        "max_new_tokens": args.max_new_tokens,
        "images_batched": args.images,
        "images_single": args.single,
        "single_img_s": round(single, 3),
        "batched_img_s": round(batched, 3),
        "ratio": round(batched / single, 2),
        "share_at_max_new_tokens": round(full_length, 3),
        "empty_captions": empty,
        "tokens_s_batched": round(batched * args.max_new_tokens, 1),
        "min_pixels": settings.min_pixels,
        "max_pixels": settings.max_pixels,
        **({"stages": breakdown} if args.stages else {}),
    }
    print(json.dumps(result))
    print()
    print(
        "| arch | device | dtype | batch | new tokens | one-at-a-time img/s | batched img/s"
        " | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.arch} | {result['device']} | {result['dtype']} | {args.batch} | "
        f"{args.max_new_tokens} | {result['single_img_s']} | {result['batched_img_s']} | "
        f"{result['ratio']} |"
    )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": [result]}, indent=1))


if __name__ == "__main__":
    main()
