"""Captioner with the tiny Qwen2-VL on generated images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featuregen_assets.core.vision.captioning import (
    Captioner,
    CaptionSettings,
    build_text_inputs,
    chat_text,
)
from featuregen_assets.core.vision.compute import ComputeSettings
from featuregen_assets.core.vision.model_profiles import ModelSpec, resolve_model
from featuregen_assets.core.vision.preprocess import open_rgb

SETTINGS = CaptionSettings(max_new_tokens=10, min_pixels=16 * 28 * 28, max_pixels=96 * 28 * 28)


@pytest.fixture(scope="module")
def spec(tiny_models_dir: Path) -> ModelSpec:
    return resolve_model("tiny", "captioner", tiny_models_dir)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Different sizes, so the visual token counts differ and the batch needs padding."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    paths = []
    for i, (w, h) in enumerate([(224, 224), (480, 320), (300, 520), (640, 480)]):
        a = np.full((h, w, 3), rng.integers(0, 255, 3), np.uint8)
        a[h // 3 : 2 * h // 3, w // 4 : w // 2] = rng.integers(0, 255, 3)
        paths.append(root / f"img{i}.jpg")
        Image.fromarray(a).save(paths[-1], quality=90)
    return paths


@pytest.fixture(scope="module")
def batched(spec, images):
    captioner = Captioner(spec, ComputeSettings(device="cpu", batch_size=4), SETTINGS)
    yield captioner, list(captioner.caption_files(images))
    captioner.close()


def test_batch_is_left_padded_with_one_pad_run_per_image(batched, images):
    captioner = batched[0]
    processed = captioner.image_processor(
        images=[open_rgb(p) for p in images], size=captioner.size, return_tensors="pt"
    )
    grid = processed["image_grid_thw"]
    enc = build_text_inputs(captioner.tokenizer, captioner.prompt, grid, 2)
    counts = (grid.prod(-1) // 4).tolist()
    assert len(set(counts)) > 1
    assert enc["mm_token_type_ids"].sum(-1).tolist() == counts
    mask = enc["attention_mask"]
    assert mask[:, -1].all() and not mask[:, 0].all()  # padding on the left
    assert (mask.cumsum(-1)[:, -1] == mask.sum(-1)).all()


def test_batched_captions_are_non_empty_and_equal_one_at_a_time(spec, batched, images):
    captioner, rows = batched
    assert [i for i, *_ in rows] == list(range(len(images)))
    assert all(caption and err is None for _, caption, err, _ in rows)
    assert len({caption for _, caption, _, _ in rows}) > 1  # the image matters
    assert all(isinstance(hit, bool) for *_, hit in rows)
    single = Captioner(spec, ComputeSettings(device="cpu", batch_size=1, num_workers=0), SETTINGS)
    assert list(single.caption_files(images)) == rows
    assert single.key == captioner.key


def test_a_batch_out_of_gpu_memory_is_captioned_in_halves(spec, batched, images, caplog):
    """`generate` of the real model, refusing batches over two images as a small GPU would."""
    captioner = Captioner(spec, ComputeSettings(device="cpu", batch_size=4), SETTINGS)
    generate, sizes = captioner.generate, []

    def small_gpu(inputs: dict) -> tuple[list[str], list[bool]]:
        sizes.append(len(inputs["image_grid_thw"]))
        if sizes[-1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return generate(inputs)

    captioner.generate = small_gpu
    assert list(captioner.caption_files(images)) == batched[1]
    assert sizes == [4, 2, 2]
    assert captioner.batch_limit == 2
    assert "a batch of 4 ran out of GPU memory" in caplog.text

    def no_gpu(inputs: dict) -> tuple[list[str], list[bool]]:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    captioner.generate = no_gpu
    with pytest.raises(torch.OutOfMemoryError):
        list(captioner.caption_files(images))
    captioner.close()


def test_corrupt_file_is_reported_and_the_rest_captioned(batched, images, tmp_path):
    captioner, rows = batched
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = list(captioner.caption_files([images[0], broken, images[1]]))
    assert [i for i, *_ in out] == [0, 1, 2]
    assert out[1][1] is None and out[1][2]
    assert (out[0][1], out[2][1]) == (rows[0][1], rows[1][1])


def test_key_follows_the_settings(spec, batched):
    other = Captioner(spec, ComputeSettings(device="cpu"), CaptionSettings(instruction="Name it."))
    assert other.key != batched[0].key and other.key.startswith("tiny/qwen2vl@")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="needs torchvision")
def test_hand_built_ids_equal_the_official_processor(batched, images):
    from transformers import Qwen2VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    captioner = batched[0]
    processor = Qwen2VLProcessor(
        image_processor=captioner.image_processor,
        tokenizer=captioner.tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=captioner.tokenizer.chat_template,
    )
    pil = [open_rgb(p) for p in images]
    prompt = chat_text(captioner.tokenizer, SETTINGS.instruction)
    official = processor(
        images=pil,
        text=[prompt] * len(pil),
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    grid = captioner.image_processor(images=pil, return_tensors="pt")["image_grid_thw"]
    ours = build_text_inputs(captioner.tokenizer, prompt, grid, 2)
    assert torch.equal(official["image_grid_thw"], grid)
    assert torch.equal(official["input_ids"], ours["input_ids"])
    assert torch.equal(official["attention_mask"], ours["attention_mask"])
    if "mm_token_type_ids" in official:
        assert torch.equal(official["mm_token_type_ids"].int(), ours["mm_token_type_ids"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_captions_batched_equal_single(spec, images):
    compute = ComputeSettings(device="cuda", dtype="float32", batch_size=4)
    gpu = Captioner(spec, compute, SETTINGS)
    rows = list(gpu.caption_files(images))
    one = Captioner(spec, ComputeSettings(device="cuda", dtype="float32", batch_size=1), SETTINGS)
    assert all(caption for _, caption, _, _ in rows)
    assert list(one.caption_files(images)) == rows
    bf16 = Captioner(spec, ComputeSettings(device="cuda", batch_size=4), SETTINGS)
    assert all(caption for _, caption, _, _ in bf16.caption_files(images))
    for c in (gpu, one, bf16):
        c.close()
