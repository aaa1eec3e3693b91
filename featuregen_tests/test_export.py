"""`featuregen export`: ids, metadata and vectors, read back with pyarrow and numpy."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from featuregen_assets.cli import main
from featuregen_assets.core.store import db
from featuregen_assets.core.store.export import export_vectors

MODEL = "tiny/dinov2@0000beef"
DIM = 12


@pytest.fixture
def stored(fg_env: Path, database_url: str) -> np.ndarray:
    """Seven images in two categories with vectors (one also in both), prompts for some."""
    vectors = np.random.default_rng(0).standard_normal((7, DIM)).astype(np.float32)
    with db.connection(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO raw_images (category, url, status, image_id, caption)"
            " VALUES (%s, %s, %s, %s, %s)",
            [
                ("cafe" if i < 4 else "bank", f"http://x/{i}", "ok", f"id{i}", f"c{i}")
                for i in range(7)
            ]
            + [
                ("bank", "http://x/0-again", "ok", "id0", None),
                ("bank", "http://x/b", "http_404", None, None),
            ],
        )
        cur.executemany(
            "INSERT INTO image_embeddings (image_id, model, embedding) VALUES (%s, %s, %s)",
            [(f"id{i}", MODEL, vectors[i]) for i in range(7)],
        )
        cur.execute(
            "INSERT INTO image_prompts (image_id, model, source, prompt)"
            " VALUES ('id1', 'q', 'generated', 'a red circle'), ('id1', 'q', 'link_caption', 'c1')"
        )
    return vectors


def test_export_without_out_writes_under_the_home_not_the_working_directory(
    stored, fg_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    assert main(["export", "--category", "cafe"]) == 0
    assert pq.read_table(fg_env / "exports" / "cafe.parquet").num_rows == 4
    assert list(workdir.iterdir()) == []


def test_parquet_export_reads_back_with_every_row_and_the_vectors(stored, tmp_path, capsys):
    assert main(["export", "--all", "--out", str(tmp_path / "out")]) == 0
    assert "8 rows of tiny/dinov2@0000beef (dimension 12)" in capsys.readouterr().out
    table = pq.read_table(tmp_path / "out" / "all.parquet")
    assert table.num_rows == 8
    assert table.column_names == ["image_id", "category", "url", "caption", "prompt", "embedding"]
    assert table.schema.field("embedding").type.list_size == DIM
    rows = table.to_pylist()
    by_url = {row["url"]: row for row in rows}
    assert (
        by_url["http://x/1"]["prompt"] == "a red circle" and by_url["http://x/2"]["prompt"] is None
    )
    assert (
        by_url["http://x/0-again"]["image_id"] == "id0"
        and by_url["http://x/0-again"]["category"] == "bank"
    )
    for row in rows:
        i = int(row["image_id"].removeprefix("id"))
        np.testing.assert_array_equal(np.asarray(row["embedding"], np.float32), stored[i])


def test_npy_export_of_one_category_lines_up_with_its_metadata(stored, tmp_path):
    assert main(["export", "--category", "cafe", "--format", "npy", "--out", str(tmp_path)]) == 0
    vectors = np.load(tmp_path / "cafe.npy")
    metadata = pq.read_table(tmp_path / "cafe.parquet").to_pylist()
    assert vectors.shape == (4, DIM) and vectors.dtype == np.float32 and len(metadata) == 4
    for row, vector in zip(metadata, vectors, strict=True):
        assert row["category"] == "cafe"
        np.testing.assert_array_equal(vector, stored[int(row["image_id"].removeprefix("id"))])


def test_the_export_is_written_batch_by_batch(stored, database_url, tmp_path):
    with db.connection(database_url) as conn:
        done = export_vectors(conn, MODEL, tmp_path, "all", "parquet", batch_rows=3)
    assert done.rows == 8 and done.dim == DIM
    assert pq.ParquetFile(tmp_path / "all.parquet").metadata.num_row_groups == 3  # 3 + 3 + 2


def test_an_unknown_category_lists_the_known_ones(stored, capsys):
    assert main(["export", "--category", "cafes"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: unknown category 'cafes'; known: bank, cafe"
    ]


@pytest.mark.parametrize(
    ("out", "reason"), [("a-file", "it is not a folder"), ("a-file/sub", "Not a directory")]
)
def test_an_out_that_cannot_be_a_folder_is_one_line(stored, tmp_path, capsys, out, reason):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--all", "--out", str(tmp_path / out)])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: cannot write the export into {tmp_path / out}: {reason}")


def test_export_needs_a_category_or_all(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--format", "npy"])
    assert exit_info.value.code == 2
    assert "one of the arguments --category --all is required" in capsys.readouterr().err
