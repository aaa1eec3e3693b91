"""ADE20K's layout and the linear probe's protocol: every image, 150 classes, "other" ignored."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featuregen_assets.cli import main as cli
from featuregen_assets.core.training.dense_probe import PatchInputs
from featuregen_assets.core.vision.preprocess import CropResize
from featuregen_assets.research.ade20k import (
    CLASSES,
    Ade20kConfig,
    ade20k_pairs,
    dataset_miou,
    run_ade20k_linear,
)

# class id -> colour; the label 0 ("other") region is grey and must never count
COLOURS = {1: (220, 30, 30), 2: (30, 200, 40), 150: (30, 40, 220)}


@pytest.fixture
def ade(tmp_path: Path) -> Path:
    """ADEChallengeData2016 in miniature: 6 training and 3 validation images, two classes
    side by side and a strip of "other" each."""
    root = tmp_path / "ADEChallengeData2016"
    ids = list(COLOURS)
    for folder, count in (("training", 6), ("validation", 3)):
        (root / "images" / folder).mkdir(parents=True)
        (root / "annotations" / folder).mkdir(parents=True)
        for k in range(count):
            left, right = ids[k % 3], ids[(k + 1) % 3]
            image = np.zeros((32, 32, 3), np.uint8)
            label = np.zeros((32, 32), np.uint8)
            image[:, :16], label[:, :16] = COLOURS[left], left
            image[:, 16:], label[:, 16:] = COLOURS[right], right
            image[:8], label[:8] = (128, 128, 128), 0
            name = f"ADE_{folder}_{k:08d}"
            Image.fromarray(image).save(root / "images" / folder / f"{name}.jpg", quality=95)
            Image.fromarray(label).save(root / "annotations" / folder / f"{name}.png")
    return root


def _colour_patches() -> PatchInputs:
    """Per-patch mean colour as the 'tokens' (what a linear head can read the class from)."""

    def tokens(pixels: np.ndarray) -> np.ndarray:
        n = len(pixels)
        return pixels.reshape(n, 4, 8, 4, 8, 3).mean((2, 4)).astype(np.float32) / 255

    return PatchInputs(CropResize(None, (32, 32), None, int(Image.Resampling.NEAREST)), 8, tokens)


def test_the_layout_pairs_every_image_with_its_annotation(ade: Path):
    assert len(ade20k_pairs(ade, "train")) == 6 and len(ade20k_pairs(ade, "test")) == 3
    next((ade / "annotations" / "validation").glob("*.png")).unlink()
    with pytest.raises(FileNotFoundError, match="no annotation"):
        ade20k_pairs(ade, "test")
    with pytest.raises(FileNotFoundError, match="images/training"):
        ade20k_pairs(ade / "nowhere", "train")


def test_miou_pools_intersections_and_unions_over_images_and_skips_absent_classes():
    counts = np.zeros((2, CLASSES, 2))
    counts[0, 0] = (9, 10)  # class 0: 9 of 10 pixels in image 0
    counts[1, 0] = (0, 10)  # and none of 10 in image 1: pooled 9 / 20
    counts[1, 5] = (1, 1)
    assert dataset_miou(counts) == pytest.approx((9 / 20 + 1) / 2)


def test_the_linear_probe_reads_the_classes_and_ignores_other(ade: Path):
    rows, context = run_ade20k_linear(
        ade,
        _colour_patches(),
        Ade20kConfig(epochs=300, lr=5e-2, batch_images=6),
        log=lambda _: None,
    )
    [miou] = rows
    assert miou.metric == "miou" and miou.n == 3 and miou.value > 0.9
    assert context["split_sizes"] == {"train": 6, "test": 3}
    assert context["classes_scored"] == 3 and "47.2" in context["anchors"]


def test_the_ade20k_protocol_is_one_command(ade: Path, fg_env: Path, capsys):
    argv = ["report", "--protocol", "ade20k-linear", "--dataset", str(ade), "--epochs", "2"]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "ADE20K linear probe: mIoU" in printed and "random network" in printed
    [report] = (fg_env / "artifacts" / "research_report").glob("ade20k-linear-*/report.json")
    assert json.loads(report.read_text())["split_sizes"] == {"train": 6, "test": 3}
