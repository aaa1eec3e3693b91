"""The device-decode path of the embedder (nvJPEG on a GPU), exercised on CPU tensors."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from featuregen_assets.core.vision.compute import ComputeSettings
from featuregen_assets.core.vision.embedding import EmbeddingSettings, ImageEmbedder
from featuregen_assets.core.vision.gpu_decode import (
    DeviceJpegDecoder,
    EncodedJpeg,
    jpeg_header,
    orient,
    read_files,
    resize_crop,
)
from featuregen_assets.core.vision.model_profiles import resolve_model


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow_exif_transpose(orientation: int) -> None:
    pixels = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buffer)))
    got = orient(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_resize_crop_resizes_a_same_size_batch_to_the_model_input() -> None:
    images = torch.stack([torch.full((3, 300, 500), v, dtype=torch.uint8) for v in (40, 200)])
    out = resize_crop(images, (256, 426), (224, 224))
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.float32
    assert out[0].mean().item() == pytest.approx(40, abs=0.5)
    assert out[1].mean().item() == pytest.approx(200, abs=0.5)


def test_jpeg_header_takes_rgb_jpegs_only() -> None:
    def encoded(mode: str, fmt: str) -> bytes:
        buffer = io.BytesIO()
        Image.new(mode, (8, 8)).save(buffer, fmt)
        return buffer.getvalue()

    assert jpeg_header(encoded("RGB", "JPEG")) == 1
    assert jpeg_header(encoded("CMYK", "JPEG")) is None
    assert jpeg_header(encoded("RGB", "PNG")) is None


def _images(root: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    paths = []
    for i, (w, h, orientation) in enumerate([(320, 240, 1), (400, 300, 6), (256, 512, 3)]):
        a = np.full((h, w, 3), rng.integers(0, 255, 3), np.uint8)
        a[: h // 3, : w // 2] = rng.integers(0, 255, 3)
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = root / f"photo{i}.jpg"
        Image.fromarray(a).save(path, quality=92, exif=exif)
        paths.append(path)
    # A gradient under faint noise: larger than a ring slot as a file, and free of the sharp
    # detail on which two decoders' resampling kernels disagree.
    ramp = np.linspace(20, 230, 800)[None, :, None] * np.array([1.0, 0.6, 0.3])
    noisy = (ramp + rng.normal(0, 6, (600, 800, 3))).clip(0, 255).astype(np.uint8)
    big = root / "noise.jpg"
    Image.fromarray(noisy).save(big, quality=95)
    assert big.stat().st_size > 112 * 112 * 3  # the tiny model's slot
    paths.append(big)
    png = root / "drawing.png"
    Image.fromarray(np.full((300, 300, 3), 90, np.uint8)).save(png)
    corrupt = root / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a JPEG")
    return [*paths, png, corrupt]


def _nvjpeg_like(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Decode as nvJPEG does: RGB, full size, EXIF orientation not applied."""
    out = []
    for tensor in tensors:
        with Image.open(io.BytesIO(tensor.numpy().tobytes())) as im:
            out.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1))
    return out


def _decode_on_device_with(embedder: ImageEmbedder, decode) -> None:
    """What a GPU with torchvision sets up, with ``decode`` in nvJPEG's place."""
    embedder._jpeg_decoder = DeviceJpegDecoder(decode, embedder.transform, embedder.device)


def _refusing(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    raise RuntimeError("nvJPEG refused the batch")


@pytest.mark.parametrize(
    ("decoder", "share", "calls"),
    [
        (_nvjpeg_like, 1.0, [3, 1]),  # the four RGB JPEGs, in batches of three
        (_refusing, 1.0, [3, 1, 1, 1, 1, 1]),  # each batch refused, then each JPEG alone
        (_nvjpeg_like, 0.5, [1, 1]),  # picks indices 1, 3 and 5; 5 is no JPEG
    ],
)
def test_device_decode_path_matches_the_pillow_path(
    tmp_path: Path, tiny_models_dir: Path, decoder, share: float, calls: list[int]
) -> None:
    spec = resolve_model("tiny", "image_embedder", tiny_models_dir)
    compute = ComputeSettings(device="cpu", batch_size=3, num_workers=0, gpu_jpeg_share=share)
    embedder = ImageEmbedder(spec, compute, EmbeddingSettings())
    paths = _images(tmp_path)
    reference = {i: (vector, error) for i, vector, error in embedder.embed_files(paths)}
    decoded: list[int] = []
    handed_over: dict[int, bytes] = {}

    def counting(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        decoded.append(len(tensors))
        handed_over.update((len(t), t.numpy().tobytes()) for t in tensors)
        return decoder(tensors)

    _decode_on_device_with(embedder, counting)
    device_path = list(embedder.embed_files(paths))
    assert decoded == calls
    for path in (paths[1], paths[3]):  # from a ring slot, and too large for one
        data = path.read_bytes()
        assert handed_over[len(data)] == data

    assert [i for i, _, _ in device_path] == list(range(len(paths)))
    for i, vector, error in device_path:
        if i == len(paths) - 1:
            assert vector is None and error and reference[i][0] is None
            continue
        assert error is None
        cosine = float(np.dot(vector, reference[i][0]))
        assert cosine > 0.99, (paths[i].name, cosine)


def test_gpu_jpeg_share_outside_zero_to_one_is_refused(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    spec = resolve_model("tiny", "image_embedder", tiny_models_dir)
    with pytest.raises(ValueError, match="gpu_jpeg_share"):
        ImageEmbedder(spec, ComputeSettings(device="cpu", gpu_jpeg_share=1.5), EmbeddingSettings())


def test_jpeg_bytes_through_reused_slots_reach_the_device_decoder_intact(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    spec = resolve_model("tiny", "image_embedder", tiny_models_dir)
    jpegs = _images(tmp_path)[:4]
    cycle = [*jpegs, jpegs[1]]  # a period of 5, prime to the 24 slots

    def embed(paths: list[Path], workers: int) -> list[np.ndarray]:
        compute = ComputeSettings(
            device="cpu", batch_size=2, num_workers=workers, gpu_jpeg_share=1.0
        )
        embedder = ImageEmbedder(spec, compute, EmbeddingSettings())
        embedder._jpeg_decoder = DeviceJpegDecoder(
            _nvjpeg_like, embedder.transform, embedder.device
        )
        rows = list(embedder.embed_files(paths))
        assert [i for i, _, _ in rows] == list(range(len(paths)))
        assert all(error is None for _, _, error in rows)
        return [vector for _, vector, _ in rows]

    reference = embed(cycle, workers=0)  # in this process, no slot is reused
    for i, vector in enumerate(embed(cycle * 10, workers=2)):  # 50 items through 24 slots
        np.testing.assert_allclose(vector, reference[i % 5], atol=1e-5)


def test_jpeg_headers_longer_than_a_slot_still_reach_the_device_decoder(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    spec = resolve_model("tiny", "image_embedder", tiny_models_dir)
    pixels = np.random.default_rng(5).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    path = tmp_path / "profiled.jpg"  # a 200 kB ICC profile ahead of the image data
    Image.fromarray(pixels).save(path, quality=90, icc_profile=bytes(range(256)) * 800)
    assert path.stat().st_size > 224 * 224 * 3

    def embed(share: float) -> np.ndarray:
        compute = ComputeSettings(device="cpu", batch_size=2, num_workers=1, gpu_jpeg_share=share)
        embedder = ImageEmbedder(spec, compute, EmbeddingSettings())
        embedder._jpeg_decoder = DeviceJpegDecoder(
            _nvjpeg_like, embedder.transform, embedder.device
        )
        [(_, vector, error)] = list(embedder.embed_files([path]))
        assert error is None
        return vector

    assert float(np.dot(embed(1.0), embed(0.0))) > 0.99


def test_a_jpeg_file_gone_before_the_device_reads_it_is_that_images_failure(
    tmp_path: Path,
) -> None:
    kept = tmp_path / "kept.jpg"
    Image.new("RGB", (8, 8)).save(kept)
    ready, failed = read_files(
        [
            (0, EncodedJpeg(None, 10, 1, str(tmp_path / "gone.jpg"))),
            (1, EncodedJpeg(None, 0, 1, str(kept))),
        ]
    )
    assert [index for index, _ in ready] == [1]
    assert ready[0][1].data.tobytes() == kept.read_bytes()
    assert [index for index, _ in failed] == [0] and "FileNotFoundError" in failed[0][1]
