"""`featuregen import`: COCO, Karpathy and Flickr30k token files as link files and query sets."""

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from featuregen_assets.cli import main
from featuregen_assets.core.ingest.caption_datasets import read_dataset, select
from featuregen_assets.core.ingest.links import parse_link_file


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three tiny images in a Karpathy-style folder with its annotation files."""
    root = tmp_path / "coco"
    (root / "val2014").mkdir(parents=True)
    for k, colour in enumerate(("red", "blue", "green")):
        Image.new("RGB", (8, 8), colour).save(root / "val2014" / f"img {k}.png")
    karpathy = {
        "images": [
            {
                "filepath": "val2014",
                "filename": f"img {k}.png",
                "split": split,
                "sentences": [{"raw": f"a {c} square"}, {"raw": f"something {c}  here"}],
            }
            for k, (c, split) in enumerate([("red", "test"), ("blue", "train"), ("green", "test")])
        ]
    }
    (root / "dataset_coco.json").write_text(json.dumps(karpathy))
    coco = {
        "images": [{"id": 7, "file_name": "val2014/img 0.png"}],
        "annotations": [
            {"image_id": 7, "caption": "a red square "},
            {"image_id": 7, "caption": "red"},
        ],
    }
    (root / "captions_val2014.json").write_text(json.dumps(coco))
    (root / "results.token").write_text(
        "val2014/img 1.png#0\ta blue square\nval2014/img 1.png#1\tblue\n"
    )
    return root


def test_the_three_formats_read_images_with_all_their_captions(folder: Path) -> None:
    karpathy = read_dataset(folder / "dataset_coco.json", "karpathy")
    assert [i.path for i in select(karpathy, "test", None)] == [
        "val2014/img 0.png",
        "val2014/img 2.png",
    ]
    [coco] = read_dataset(folder / "captions_val2014.json", "coco")
    assert coco.captions == ("a red square", "red")
    [token] = read_dataset(folder / "results.token", "flickr30k-token")
    assert token.path == "val2014/img 1.png" and len(token.captions) == 2
    with pytest.raises(ValueError, match="unknown format"):
        read_dataset(folder / "results.token", "voc")


def test_import_writes_a_link_file_and_queries_keyed_by_image_id(
    fg_env: Path, folder: Path, capsys
) -> None:
    argv = [
        "import",
        "karpathy",
        str(folder / "dataset_coco.json"),
        "--images",
        str(folder),
        "--base-url",
        "http://127.0.0.1:8900/",
        "--category",
        "coco_test",
        "--split",
        "test",
    ]
    assert main(argv) == 0
    links = parse_link_file(fg_env.parent / "links" / "coco_test.txt")
    assert not links.report.skipped.counts
    assert [(link.url, link.caption) for link in links.links] == [
        ("http://127.0.0.1:8900/val2014/img%200.png", "a red square"),
        ("http://127.0.0.1:8900/val2014/img%202.png", "a green square"),
    ]
    queries = [
        json.loads(line)
        for line in (fg_env / "import" / "coco_test.queries.jsonl").read_text().splitlines()
    ]
    red = hashlib.sha256((folder / "val2014" / "img 0.png").read_bytes()).hexdigest()
    assert len(queries) == 4 and queries[1] == {
        "query_set": "template",
        "query": "something red here",
        "positives": [red],
        "image_id": red,
        "category": "coco_test",
    }
    assert "featuregen report --queries" in capsys.readouterr().out
    assert main([*argv[:-2], "--split", "nowhere"]) == 1  # no image: nothing written
    assert len(parse_link_file(fg_env.parent / "links" / "coco_test.txt").links) == 2
    assert (
        main(
            [
                "import",
                "coco",
                str(folder / "results.token"),
                "--images",
                str(folder),
                "--base-url",
                "http://x",
                "--category",
                "c",
            ]
        )
        == 2
    )
