"""Standard caption protocols: Karpathy's split honoured, five captions, both directions."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featuregen_assets.cli import main as cli
from featuregen_assets.core.ingest.caption_datasets import CaptionedImage
from featuregen_assets.core.training.alignment import AlignmentConfig
from featuregen_assets.core.vision.model_profiles import tiny_dir
from featuregen_assets.research.protocols import (
    both_directions,
    folds_mean,
    karpathy_sides,
    run_caption_protocol,
)

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black", "pink", "grey"]
SPLITS = ["train"] * 4 + ["restval"] * 2 + ["val"] * 2 + ["test"] * 2


@pytest.fixture
def karpathy(tmp_path: Path) -> Path:
    """Ten flat-colour images in Karpathy's format: 4 train, 2 restval, 2 val, 2 test, each
    with five captions."""
    root = tmp_path / "coco"
    (root / "val2014").mkdir(parents=True)
    images = []
    for k, (colour, split) in enumerate(zip(COLOURS, SPLITS, strict=True)):
        Image.new("RGB", (16, 16), colour).save(root / "val2014" / f"{k}.png")
        sentences = [
            {"raw": f"{w} {colour} picture number {k}"} for w in ("a", "one", "the", "my", "your")
        ]
        images.append(
            {"filepath": "val2014", "filename": f"{k}.png", "split": split, "sentences": sentences}
        )
    (root / "dataset_coco.json").write_text(json.dumps({"images": images}))
    return root


def test_the_sides_follow_karpathys_split_with_restval_for_training():
    images = [CaptionedImage(f"{k}.png", ("x",), s) for k, s in enumerate(SPLITS)]
    sides = karpathy_sides(images)
    assert [len(sides[s]) for s in ("train", "validation", "test")] == [6, 2, 2]
    assert {i.split for i in sides["train"]} == {"train", "restval"}
    with pytest.raises(ValueError, match="split 'extra'"):
        karpathy_sides([CaptionedImage("a.png", ("x",), "extra")])
    with pytest.raises(ValueError, match="no captions"):
        karpathy_sides([CaptionedImage("a.png", (), "test")])


def test_recall_is_counted_both_ways_as_published():
    images = np.eye(3)
    # captions 0, 1 belong to image 0, caption 2 to image 1, caption 3 to image 2;
    # caption 1 points at image 1, caption 3 at image 0
    queries = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0.1]], dtype=float)
    owners = np.array([0, 0, 1, 2])
    figures = both_directions(queries, owners, images)
    t2i, i2t = figures["text_to_image"], figures["image_to_text"]
    assert t2i["recall@1"].value == 0.5 and t2i["recall@1"].n == 4  # captions 0 and 2
    # image 0: its caption 0 first; image 1: its caption 2 ties with image 0's caption 1 (a
    # tie counts against it); image 2: its caption 3 first
    assert i2t["recall@1"].n == 3 and i2t["recall@1"].value == pytest.approx(2 / 3)
    assert t2i["recall@5"].value == i2t["recall@5"].value == 1.0
    folds = folds_mean(queries[:3], owners[:3], images[:2], 1)
    assert folds["text_to_image"]["recall@1"].n == 3  # two folds of one image, pooled count


def test_a_protocol_trains_on_train_and_restval_and_scores_five_captions_per_test_image(
    karpathy: Path, tiny_models_dir: Path
):
    seen = []

    def embed(files):
        seen.extend(files)
        return np.stack([np.asarray(Image.open(f), np.float32).mean((0, 1)) for f in files])

    config = AlignmentConfig(device="cpu", epochs=2, batch_size=8, eval_every=1)
    run = run_caption_protocol(
        "coco-karpathy",
        karpathy / "dataset_coco.json",
        karpathy,
        embed,
        tiny_dir("text_tower", tiny_models_dir),
        config,
        log=lambda _m: None,
    )
    assert len(seen) == 10
    assert run.context["split_sizes"] == {"train": 6, "validation": 2, "test": 2}
    assert run.context["training_texts"] == 30 and run.context["queries"] == 10
    by = {(m.query_set, m.metric): m for m in run.measurements}
    assert by[("text_to_image", "recall@1")].n == 10  # every caption of the test images
    assert by[("image_to_text", "recall@1")].n == 2
    assert {m.query_set for m in run.measurements} == {"text_to_image", "image_to_text"}
    assert not any("category" in m.method for m in run.measurements)
    assert "30.4" in run.context["anchors"]


def test_the_protocol_is_one_command(karpathy: Path, fg_env: Path, capsys):
    argv = [
        "report",
        "--protocol",
        "coco-karpathy",
        "--dataset",
        str(karpathy / "dataset_coco.json"),
    ]
    assert cli([*argv, "--images", str(karpathy), "--epochs", "1", "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "pipeline validation on random weights; no finding about DINOv2" in printed
    [report] = (fg_env / "artifacts" / "research_report").glob("coco-karpathy-*/report.json")
    data = json.loads(report.read_text())
    assert data["split_sizes"]["train"] == 6 and data["batch_size"] == 8
    assert {r["query_set"] for r in data["rows"]} == {"text_to_image", "image_to_text"}
    with pytest.raises(SystemExit, match="needs --dataset"):
        cli(["report", "--protocol", "coco-karpathy"])
