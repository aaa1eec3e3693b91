"""Export the stored vectors with their ids and metadata, as clip-retrieval users expect them.

One row per downloaded link (`raw_images` row `ok`) whose image has a vector of the model:
image id, category, URL, the link file's caption, the newest generated prompt, the vector.
Rows come from a server-side cursor in batches and go to the file batch by batch, so memory
stays bounded however many rows there are. `parquet`: one file with every column, the vector a
fixed-size list of float32. `npy`: the vectors as one float32 `(rows, dim)` `.npy` array and
the other columns, in the same order, beside it in a `.parquet` (clip-retrieval's
`img_emb/*.npy` + `metadata/*.parquet`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("parquet", "npy")
BATCH_ROWS = 4096
METADATA_COLUMNS = ("image_id", "category", "url", "caption", "prompt")

_ROWS = """
SELECT r.image_id, r.category, r.url, r.caption,
       (SELECT p.prompt FROM image_prompts p
        WHERE p.image_id = r.image_id AND p.source = 'generated'
        ORDER BY p.created_at DESC LIMIT 1),
       e.embedding
FROM raw_images r
JOIN image_embeddings e ON e.image_id = r.image_id AND e.model = %(model)s
WHERE r.status = 'ok' {in_category}
ORDER BY r.category, r.url
"""


@dataclass(frozen=True)
class Export:
    """What an export wrote."""

    rows: int
    dim: int
    files: tuple[Path, ...]


def _batches(
    conn: psycopg.Connection, model: str, category: str | None, batch_rows: int
) -> Iterator[list[tuple]]:
    """The rows to export, `batch_rows` at a time, from a server-side cursor."""
    in_category = "AND r.category = %(category)s" if category else ""
    with conn.cursor(name="featuregen_export") as cursor:
        cursor.itersize = batch_rows
        cursor.execute(
            _ROWS.format(in_category=in_category), {"model": model, "category": category}
        )
        while rows := cursor.fetchmany(batch_rows):
            yield rows


def _count(conn: psycopg.Connection, model: str, category: str | None) -> int:
    in_category = "AND r.category = %(category)s" if category else ""
    statement = (
        "SELECT count(*) FROM raw_images r JOIN image_embeddings e"
        " ON e.image_id = r.image_id AND e.model = %(model)s"
        f" WHERE r.status = 'ok' {in_category}"
    )
    return conn.execute(statement, {"model": model, "category": category}).fetchone()[0]


def _vector(value) -> np.ndarray:
    """A stored vector as float32 (pgvector's `Vector` from a server-side cursor)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, np.float32)


def _vectors(rows: list[tuple], dim: int) -> np.ndarray:
    vectors = np.asarray([_vector(row[5]) for row in rows])
    if vectors.shape != (len(rows), dim):
        raise ValueError(f"vectors of several dimensions under one model (expected {dim})")
    return vectors


def _metadata(rows: list[tuple]) -> dict[str, list]:
    return {name: [row[i] for row in rows] for i, name in enumerate(METADATA_COLUMNS)}


def _schema(dim: int | None) -> pa.Schema:
    fields = [pa.field(name, pa.string()) for name in METADATA_COLUMNS]
    if dim is not None:
        fields.append(pa.field("embedding", pa.list_(pa.float32(), dim)))
    return pa.schema(fields)


def export_vectors(
    conn: psycopg.Connection,
    model: str,
    out: Path,
    name: str,
    file_format: str,
    category: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Export:
    """Write the rows of `category` (all categories when None) with vectors of `model` to
    `out/<name>.parquet` (and `out/<name>.npy` for `npy`), streamed; run it in a transaction of
    its own (`conn` is set to repeatable read, so the count and the rows agree)."""
    if file_format not in FORMATS:
        raise ValueError(f"unknown export format {file_format!r}: expected one of {FORMATS}")
    out.mkdir(parents=True, exist_ok=True)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    table_path = out / f"{name}.parquet"
    array_path = out / f"{name}.npy"
    total = _count(conn, model, category) if file_format == "npy" else None
    array = None
    writer = None
    rows_written = dim = 0
    try:
        for rows in _batches(conn, model, category, batch_rows):
            if writer is None:
                dim = len(_vector(rows[0][5]))
                writer = pq.ParquetWriter(
                    table_path, _schema(dim if file_format == "parquet" else None)
                )
                if file_format == "npy":
                    array = np.lib.format.open_memmap(
                        array_path, mode="w+", dtype=np.float32, shape=(total, dim)
                    )
            vectors = _vectors(rows, dim)
            columns = _metadata(rows)
            if array is not None:
                array[rows_written : rows_written + len(rows)] = vectors
            else:
                columns["embedding"] = pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1), pa.float32()), dim
                )
            writer.write_table(pa.table(columns, schema=writer.schema))
            rows_written += len(rows)
    finally:
        if writer is not None:
            writer.close()
        if array is not None:
            array.flush()
            del array
    if writer is None:
        raise LookupError(f"no stored vectors of {model} to export")
    files = (table_path, array_path) if file_format == "npy" else (table_path,)
    return Export(rows=rows_written, dim=dim, files=files)
