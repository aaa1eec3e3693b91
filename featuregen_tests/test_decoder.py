"""Feature-vector decoder: learns a vector->image map, feature consistency, save/load."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featuregen_assets.core.training.decoder import (
    DecoderConfig,
    FeatureDecoder,
    encoder_for,
    square_image,
    train_decoder,
)
from featuregen_assets.core.vision.compute import ComputeSettings, torch_threads
from featuregen_assets.core.vision.embedding import EmbeddingSettings, ImageEmbedder
from featuregen_assets.core.vision.model_profiles import resolve_models


@pytest.fixture(scope="module")
def scenes():
    """80 images: a coloured square on a coloured background; the vector encodes both colours."""
    rng = np.random.default_rng(0)
    projection = rng.normal(size=(6, 24))
    images, vectors, ids = [], [], []
    for i in range(80):
        bg, fg = rng.integers(0, 256, size=3), rng.integers(0, 256, size=3)
        image = np.empty((16, 16, 3), dtype=np.uint8)
        image[:] = bg
        image[4:12, 4:12] = fg
        images.append(image)
        vectors.append(np.concatenate([bg, fg]) / 255 @ projection)
        ids.append(f"image-{i}")
    return np.array(vectors, dtype=np.float32), np.stack(images), ids


def _config(**kw):
    base = dict(
        image_size=16,
        base_channels=16,
        max_channels=32,
        epochs=60,
        batch_size=16,
        lr=5e-3,
        device="cpu",
        seed=0,
    )
    return DecoderConfig(**{**base, **kw})


def _validation_curve(logs: list[str]) -> list[float]:
    """The validation PSNR of each epoch line."""
    return [
        float(line.split("validation PSNR ")[1].split(" dB")[0])
        for line in logs
        if line.startswith("epoch ")
    ]


def test_decoder_learns_the_map_beyond_the_mean_image(scenes):
    vectors, images, ids = scenes
    logs = []
    result = train_decoder(vectors, images, ids, _config(patience=None), log=logs.append)
    m = result.metrics
    assert m["held_out_images"] + m["validation_images"] + m["train_images"] == 80
    assert m["validation_images"] > 0
    assert m["psnr_gain_db"] > 3.0
    assert m["ssim"] > m["mean_image_ssim"]
    assert len(result.loss_curve) == 60 and result.loss_curve[-1] < result.loss_curve[0] / 3
    assert result.grid.size == (8 * 66 + 2, 2 * 66 + 2)  # 16px tiles shown at 64px
    assert logs[-3].endswith(":00:00 left")  # epoch 60's line, then "kept" and "done"
    curve = _validation_curve(logs)
    assert len(curve) == 60 and m["validation_psnr"] == pytest.approx(max(curve), abs=0.01)
    assert curve[m["kept_epoch"] - 1] == max(curve)  # the best epoch's weights were kept


def test_decoder_stops_at_its_plateau(scenes):
    """Vectors that say nothing of their image plateau at once, at the mean image's PSNR; the
    real vectors keep improving for longer. Both stop `patience` epochs after their best."""
    vectors, images, ids = scenes
    noise = np.random.default_rng(1).normal(size=vectors.shape).astype(np.float32)
    config = _config(epochs=100, patience=5)
    results, curves = {}, {}
    with torch_threads(1):
        for name, inputs in (("noise", noise), ("vectors", vectors)):
            logs = []
            results[name] = train_decoder(inputs, images, ids, config, log=logs.append).metrics
            curves[name] = _validation_curve(logs)
    for name, m in results.items():
        assert m["epochs_trained"] == m["kept_epoch"] + 5 == len(curves[name]) < 100, name
        best = max(curves[name][: m["kept_epoch"]])
        assert all(v <= best + config.min_delta_db for v in curves[name][m["kept_epoch"] :])
    noise_m, real = results["noise"], results["vectors"]
    assert abs(noise_m["psnr"] - noise_m["mean_image_psnr"]) < 1.5  # its plateau: the mean
    assert noise_m["epochs_trained"] < real["kept_epoch"]
    assert real["psnr_gain_db"] > 6.0


def test_feature_consistency_re_encodes_with_the_image_embedder(tiny_models_dir, scenes):
    _, images, ids = scenes
    spec = resolve_models("tiny", tiny_models_dir)["image_embedder"]
    embedder = ImageEmbedder(
        spec, ComputeSettings(device="cpu", num_workers=0), EmbeddingSettings()
    )
    encode = encoder_for(embedder)
    vectors = encode([Image.fromarray(i) for i in images])
    assert vectors.shape == (80, 384)
    result = train_decoder(
        vectors, images, ids, _config(max_steps=10), encode=encode, log=lambda _: None
    )
    m = result.metrics
    assert m["chance_top1"] == pytest.approx(1 / m["held_out_images"])
    assert m["downsized_original_top1"] == 1.0  # same pixels in, same vectors out
    assert -1.0 <= m["reencoded_cosine"] <= 1.0 and 0.0 <= m["reencoded_top1"] <= 1.0


def test_save_load_round_trip_and_reproducibility(tmp_path, scenes):
    vectors, images, ids = scenes
    first = train_decoder(vectors, images, ids, _config(max_steps=8), log=lambda _: None)
    second = train_decoder(vectors, images, ids, _config(max_steps=8), log=lambda _: None)
    assert first.loss_curve == second.loss_curve
    first.decoder.save(tmp_path / "dec", metrics=first.metrics)
    loaded = FeatureDecoder.load(tmp_path / "dec")
    assert loaded.training_config["image_size"] == 16
    np.testing.assert_array_equal(loaded.decode(vectors[:5]), first.decoder.decode(vectors[:5]))
    assert loaded.decode(vectors[:5]).shape == (5, 16, 16, 3)


def test_square_image_crops_the_centre_upright(tmp_path):
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, 10:30] = 255  # the centre square is white
    path = Path(tmp_path / "wide.png")
    Image.fromarray(image).save(path)
    out = square_image(path, 8)
    assert out.shape == (8, 8, 3) and out.min() > 200


def test_config_needs_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        DecoderConfig(image_size=48)


def test_an_unreadable_image_file_is_named_and_left_out_not_fatal(tmp_path, scenes):
    vectors, images, ids = scenes
    paths = []
    for i, image in enumerate(images[:20]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    truncated = tmp_path / "3.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    logs = []
    result = train_decoder(vectors[:20], paths, ids[:20], _config(epochs=1), log=logs.append)
    m = result.metrics
    assert m["held_out_images"] + m["validation_images"] + m["train_images"] == 19
    assert any(str(truncated) in line for line in logs)


def test_a_decoder_from_patch_grids_learns_where_things_are(scenes):
    rng = np.random.default_rng(1)
    images = np.zeros((80, 16, 16, 3), np.uint8)
    for image in images:  # one colour square at a random place
        y, x = rng.integers(0, 9, 2)
        image[y : y + 8, x : x + 8] = rng.integers(0, 256, 3)
    grids = images.reshape(80, 4, 4, 4, 4, 3).mean(axis=(2, 4)).astype(np.float32) / 255
    ids = [f"image-{i}" for i in range(80)]
    result = train_decoder(grids, images, ids, _config(epochs=40), log=lambda _m: None)
    assert type(result.decoder).__name__ == "PatchDecoder"
    assert result.metrics["psnr_gain_db"] > 3.0
    assert result.decoder.decode(grids[:2]).shape == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="needs vectors, not patch grids"):
        train_decoder(grids, images, ids, _config(), encode=lambda images: None)
