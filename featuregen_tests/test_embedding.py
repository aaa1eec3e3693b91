"""ImageEmbedder with the tiny DINOv2 on generated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor

from featuregen_assets.core.vision.compute import ComputeSettings
from featuregen_assets.core.vision.embedding import EmbeddingSettings, ImageEmbedder
from featuregen_assets.core.vision.model_profiles import ModelSpec, resolve_model
from featuregen_assets.core.vision.preprocess import open_rgb


def write_images(root: Path) -> list[Path]:
    """Coloured scenes of varied size and format, one EXIF-rotated JPEG."""
    rng = np.random.default_rng(7)
    paths = []
    for i, (w, h) in enumerate([(224, 224), (640, 480), (300, 700), (800, 600), (256, 300)]):
        a = np.full((h, w, 3), rng.integers(0, 255, 3), np.uint8)
        a[h // 4 : h // 2, w // 3 : 2 * w // 3] = rng.integers(0, 255, 3)
        im = Image.fromarray(a)
        path = root / f"img{i}.{'png' if i == 4 else 'jpg'}"
        if i == 1:
            exif = Image.Exif()
            exif[0x0112] = 6  # stored sideways: upright is 480 × 640
            im.save(path, quality=90, exif=exif)
        else:
            im.save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def spec(tiny_models_dir: Path) -> ModelSpec:
    return resolve_model("tiny", "image_embedder", tiny_models_dir)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("images"))


def embed(spec, paths, device="cpu", pooling="cls", workers=2, dtype="auto"):
    compute = ComputeSettings(device=device, dtype=dtype, batch_size=2, num_workers=workers)
    embedder = ImageEmbedder(spec, compute, EmbeddingSettings(pooling=pooling))
    try:
        return embedder, list(embedder.embed_files(paths))
    finally:
        embedder.close()


def test_vectors_are_unit_norm_model_dim_and_deterministic(spec, images):
    embedder, rows = embed(spec, images)
    assert embedder.dim == 384  # the tiny DINOv2: dinov2-small's width
    assert [i for i, _, _ in rows] == list(range(len(images)))
    vectors = np.stack([v for _, v, err in rows if err is None])
    assert vectors.shape == (len(images), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - vectors[0]).max() > 1e-3  # different images, different vectors
    _, again = embed(spec, images, workers=0)
    np.testing.assert_array_equal(vectors, np.stack([v for _, v, _ in again]))


def test_cls_plus_mean_doubles_dim_and_starts_with_cls(spec, images):
    cls_embedder, cls_rows = embed(spec, images[:2])
    both_embedder, both_rows = embed(spec, images[:2], pooling="cls+mean")
    dim = cls_embedder.dim
    assert both_embedder.dim == 2 * dim
    assert both_embedder.key != cls_embedder.key
    for (_, cls_vec, _), (_, both, _) in zip(cls_rows, both_rows, strict=True):
        assert both.shape == (2 * dim,)
        assert np.linalg.norm(both) == pytest.approx(1.0, abs=1e-5)
        head = both[:dim] / np.linalg.norm(both[:dim])
        np.testing.assert_allclose(head, cls_vec, atol=1e-5)


def test_corrupt_file_is_reported_and_the_rest_embedded(spec, images, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(images[0].read_bytes()[:200])  # a truncated JPEG
    html = tmp_path / "page.jpg"
    html.write_text("<html>not an image</html>")
    paths = [images[0], broken, images[2], html, images[3]]
    _, rows = embed(spec, paths)
    assert [i for i, _, _ in rows] == [0, 1, 2, 3, 4]
    failed = {i: err for i, v, err in rows if v is None}
    assert set(failed) == {1, 3} and all(failed.values())
    _, good = embed(spec, [images[0], images[2], images[3]])
    kept = [v for _, v, _ in rows if v is not None]
    np.testing.assert_allclose(np.stack(kept), np.stack([v for _, v, _ in good]), atol=1e-6)


def test_worker_preprocessing_matches_the_image_processor(spec, images):
    embedder = ImageEmbedder(spec, ComputeSettings(device="cpu"), EmbeddingSettings())
    processor = AutoImageProcessor.from_pretrained(spec.name_or_path)
    im = open_rgb(images[1])  # no draft: compare the geometry and normalisation alone
    assert im.size == (480, 640)  # EXIF orientation applied
    ours = embedder.pixels_to_input(torch.from_numpy(embedder.transform(im))[None])
    ref = processor(im, return_tensors="pt")["pixel_values"]
    assert ours.shape == ref.shape == (1, 3, 112, 112)
    assert (ours - ref).abs().mean() < 0.02


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_matches_cpu(spec, images):
    _, cpu_rows = embed(spec, images)
    embedder, gpu_rows = embed(spec, images, device="cuda")
    assert embedder.dtype == torch.bfloat16
    for (_, a, _), (_, b, _) in zip(cpu_rows, gpu_rows, strict=True):
        assert float(a @ b) > 0.99


def test_loader_slots_are_reused_without_mixing_images(spec, images):
    # batch 2 with 2 workers: a ring of 24 slots, so 60 files wrap it twice
    paths = images * 12
    _, rows = embed(spec, paths, workers=2)
    _, single = embed(spec, images, workers=0)
    expected = [v for _, v, _ in single]
    assert [i for i, _, _ in rows] == list(range(len(paths)))
    for i, vector, error in rows:
        assert error is None
        np.testing.assert_allclose(vector, expected[i % len(images)], atol=1e-5)


def test_a_cpu_embedder_runs_on_the_threads_its_settings_give(spec, images):
    before = torch.get_num_threads()
    try:
        compute = ComputeSettings(device="cpu", num_workers=0, torch_threads=1)
        embedder = ImageEmbedder(spec, compute, EmbeddingSettings())
        try:
            assert torch.get_num_threads() == 1
            assert all(vector is not None for _, vector, *_ in embedder.embed_files(images))
        finally:
            embedder.close()
    finally:
        torch.set_num_threads(before)


def test_no_files_embed_to_nothing(spec):
    _, rows = embed(spec, [])
    assert rows == []
