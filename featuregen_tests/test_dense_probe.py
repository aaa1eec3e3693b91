"""Dense probe: mask geometry, patch labels, mean IoU and a probe that must learn."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from featuregen_assets.core.training.dense_probe import (
    ProbeConfig,
    box_iou,
    crop_mask,
    detection_counts,
    matched_detections,
    mean_iou,
    patch_fractions,
    pixel_patches,
    regions,
    segment,
    train_probe,
)
from featuregen_assets.core.vision.preprocess import CropResize
from featuregen_assets.research.answers import probe_answers
from featuregen_assets.research.dense import (
    box_estimates,
    compare_dense_probes,
    iou_counts,
    iou_estimates,
    record_boxes,
)


def test_crop_mask_follows_the_image_geometry_without_blending_labels() -> None:
    transform = CropResize(256, None, (224, 224), int(Image.Resampling.BICUBIC))
    mask = np.zeros((300, 500), np.uint8)
    mask[:, 250:] = 3  # right half
    image = np.repeat(mask[..., None] * 80, 3, axis=2)
    labels = crop_mask(Image.fromarray(mask), transform)
    pixels = transform(Image.fromarray(image))
    assert labels.shape == (224, 224)
    assert set(np.unique(labels)) == {0, 3}
    assert np.array_equal(labels == 3, pixels[..., 0] > 120)


def test_patch_fractions_are_each_blocks_class_shares() -> None:
    mask = np.zeros((4, 6), np.uint8)
    mask[:2, :2] = 2  # block (0, 0) all 2
    mask[0, 2] = 1  # block (0, 1): one 1 among three 0s
    shares = patch_fractions(mask, 2, classes=3)
    assert shares.shape == (2, 3, 3)
    np.testing.assert_allclose(shares[0, 0], [0, 0, 1])
    np.testing.assert_allclose(shares[0, 1], [0.75, 0.25, 0])
    np.testing.assert_allclose(shares.sum(axis=-1), 1)


def test_pixel_patches_keep_each_block_together() -> None:
    pixels = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    patches = pixel_patches(pixels, 2)
    assert patches.shape == (2, 2, 2, 12)
    np.testing.assert_allclose(patches[1, 0, 1] * 255, pixels[1, :2, 2:4].ravel())


def test_mean_iou_counts_classes_present_in_either() -> None:
    truth = np.array([[0, 0, 1, 1]])
    predicted = np.array([[0, 1, 1, 1]])
    miou, ious = mean_iou(predicted, truth, classes=3)
    assert ious[0] == pytest.approx(1 / 2) and ious[1] == pytest.approx(2 / 3)
    assert np.isnan(ious[2]) and miou == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_probe_learns_labels_that_features_encode_linearly() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(3, (40, 4, 4), p=[0.8, 0.1, 0.1])  # mostly background
    targets = np.eye(3, dtype=np.float32)[labels]
    centres = rng.normal(0, 1, (3, 8))
    features = (centres[labels] + rng.normal(0, 0.3, (40, 4, 4, 8))).astype(np.float32)
    truth = np.repeat(np.repeat(labels[30:], 2, axis=1), 2, axis=2)
    probe = train_probe(features[:30], targets[:30], ProbeConfig(epochs=200))
    assert mean_iou(segment(probe, features[30:], (8, 8)), truth, 3)[0] > 0.6
    noise = rng.normal(0, 1, features.shape).astype(np.float32)
    chance = train_probe(noise[:30], targets[:30], ProbeConfig(epochs=200))
    assert mean_iou(segment(chance, noise[30:], (8, 8)), truth, 3)[0] < 0.45


def test_regions_are_the_connected_areas_of_one_class() -> None:
    labels = np.zeros((20, 30), np.uint8)
    labels[2:6, 3:9] = 1  # two separate regions of class 1
    labels[10:18, 20:27] = 1
    labels[10:14, 8:12] = 2  # one of class 2, touching nothing
    labels[10:14, 12:14] = 3  # class 3 touching class 2: a region of its own
    labels[0, 29] = 2  # a speck, below min_area
    found = sorted(regions(labels, min_area=4))
    assert found == [
        (1, (3, 2, 9, 6)),
        (1, (20, 10, 27, 18)),
        (2, (8, 10, 12, 14)),
        (3, (12, 10, 14, 14)),
    ]


def test_a_detection_counts_once_for_its_class_at_half_overlap() -> None:
    truth = [(1, (0, 0, 10, 10)), (2, (20, 20, 30, 30))]
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert matched_detections(truth, truth) == 2
    assert matched_detections([(1, (0, 0, 10, 10)), (1, (1, 0, 11, 10))], truth) == 1
    assert matched_detections([(2, (0, 0, 10, 10))], truth) == 0  # wrong class
    assert matched_detections([(1, (5, 0, 15, 10))], truth) == 0  # IoU 1/3


def test_the_positive_control_reaches_its_ceiling_where_noise_features_do_not() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((48, 32, 32), np.uint8)
    boxes = []
    for mask in masks:  # one 8-16 px square of class 1 or 2 per image
        side, (y, x) = rng.integers(8, 17), rng.integers(0, 16, 2)
        label = int(rng.integers(1, 3))
        mask[y : y + side, x : x + side] = label
        boxes.append([(label, (int(x), int(y), int(x + side), int(y + side)))])
    pixels = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    tokens = rng.normal(size=(48, 8, 8, 16)).astype(np.float32)  # hold nothing
    rows = compare_dense_probes(
        pixels,
        masks,
        tokens,
        4,
        np.arange(32),
        np.arange(32, 48),
        ProbeConfig(epochs=150),
        boxes=boxes[32:],
    )
    by = {(r.method, r.metric): r for r in rows}
    ceiling = by[("ceiling: linear probe on the true class shares", "miou")]
    for head in ("linear", "mlp 64"):
        control = by[(f"{head} probe: positive control: true class shares + noise", "miou")]
        assert control.value >= 0.9 * ceiling.value > 0.5
        noise = by[(f"{head} probe: patch tokens", "foreground_iou")]
        assert noise.ci_high < by[(control.method, "foreground_iou")].ci_low
    assert by[("background everywhere", "foreground_iou")].value == 0
    # boxes at IoU 0.5: the control finds most squares, the noise tokens next to none
    control_boxes = by[
        ("linear probe: positive control: true class shares + noise", "box_recall@0.5")
    ]
    assert control_boxes.value >= 0.75 and control_boxes.ci_low <= control_boxes.value
    assert by[("linear probe: patch tokens", "box_recall@0.5")].ci_high < control_boxes.ci_low
    assert by[("background everywhere", "box_recall@0.5")].value == 0
    assert ("background everywhere", "box_precision@0.5") not in by  # nothing predicted
    assert {r.query_set for r in rows} == {"segmentation_test_images"}
    assert all(r.ci_low <= r.value <= r.ci_high and r.n == 16 for r in rows)
    control_answer, tokens_answer, boxes_answer = probe_answers(rows)
    assert boxes_answer.startswith("Boxes at IoU 0.5") and "positive control recall" in boxes_answer
    assert control_answer.endswith("the probe finds what features hold.")
    assert "0.000 [0.000, 0.000] is level with" in tokens_answer  # noise = pixels: nothing
    assert tokens_answer.endswith(("they hold little of it.", "than the linear head reads."))


def test_pooled_iou_counts_pixels_over_all_images() -> None:
    truth = np.array([[[1, 1, 0, 0]], [[0, 0, 0, 1]]])
    predicted = np.array([[[1, 0, 0, 0]], [[0, 0, 1, 1]]])
    counts = iou_counts(predicted, truth, 2)
    assert counts[:, 1].tolist() == [[1, 2], [1, 2]]
    estimates = iou_estimates(predicted, truth, 2)
    assert estimates["foreground_iou"].value == pytest.approx(2 / 4)
    assert estimates["miou"].value == pytest.approx((2 / 4 + 4 / 6) / 2)


def test_box_rows_pool_matches_over_images_with_intervals() -> None:
    truth = [[(1, (0, 0, 10, 10))], [(2, (0, 0, 8, 8)), (1, (10, 10, 20, 20))]]
    predicted = np.zeros((2, 20, 20), np.uint8)
    predicted[0, 0:10, 0:10] = 1  # a hit
    predicted[1, 0:8, 0:8] = 1  # right place, wrong class
    predicted[1, 10:20, 10:20] = 1  # a hit
    assert detection_counts(predicted, truth).tolist() == [[1, 1, 1], [1, 2, 2]]
    estimates = box_estimates(predicted, truth)
    assert estimates["box_precision@0.5"].value == pytest.approx(2 / 3)
    assert estimates["box_recall@0.5"].value == pytest.approx(2 / 3)
    recall = estimates["box_recall@0.5"]
    assert recall.n == 2 and recall.ci_low <= recall.value <= recall.ci_high


def test_scene_record_boxes_follow_the_embedders_crop() -> None:
    # 500 x 300 -> shortest edge 256 (426 x 256) -> centre crop 224: x from 101 to 364 px
    transform = CropResize(256, None, (224, 224), int(Image.Resampling.BICUBIC))
    (left, top, right, bottom), size = transform.window(500, 300)
    assert size == (224, 224) and (top, bottom) == pytest.approx((300 * 16 / 256, 300 * 240 / 256))
    assert (left, right) == pytest.approx((101 * 500 / 426, 325 * 500 / 426))
    record = {
        "width": 500,
        "height": 300,
        "objects": [
            {"box": [200, 30, 260, 90], "class_id": 3},  # inside the crop
            {"box": [0, 0, 60, 60], "class_id": 1},  # left of it: not visible
            {"box": [350, 100, 420, 160], "class_id": 2},  # cut by the crop's right edge
        ],
    }
    sx, sy = 426 / 500, 256 / 300
    inside, cut = record_boxes(record, transform)
    assert inside[0] == 3 and inside[1] == pytest.approx(
        ((200 - left) * sx, (30 - top) * sy, (260 - left) * sx, (90 - top) * sy), abs=1
    )
    assert cut[0] == 2 and cut[1][2] == 224 and cut[1][0] == round((350 - left) * sx)
