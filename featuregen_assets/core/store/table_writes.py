"""Bulk writes of `Table`s into PostgreSQL + pgvector tables, and their HNSW indexes.

Binary COPY; upserts through a temporary table and one INSERT ... ON CONFLICT. Inserting
into an HNSW graph costs about 1–2 ms a 768-d row on one connection, so `upsert_in_parallel`
splits a write over several connections at once, each its own transaction: pgvector's
inserts into one graph run concurrently. The pgvector IO manager is the Dagster side of this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol

import psycopg
from psycopg import sql

from featuregen_assets.core.store import db, schema
from featuregen_assets.core.store.table import Table

# maintenance_work_mem of an HNSW build: the graph's estimated size, within these bounds (MB).
# A graph larger than it is finished on disk, several times slower (RESULTS.md).
INDEX_MEMORY_MIN_MB, INDEX_MEMORY_MAX_MB = 1024, 8192
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64  # pgvector's defaults
# The element type a model's vectors are indexed and compared as, and its bytes per element.
VECTOR_TYPE = "vector"
ELEMENT_BYTES = {"vector": 4, "halfvec": 2}
ROWS_PER_WRITER = 500  # fewer rows than this do not pay for another connection


class QualifiedTable(Protocol):
    """A table by schema and name (Dagster's `TableSlice` is one)."""

    @property
    def schema(self) -> str: ...

    @property
    def table(self) -> str: ...


class TableName(NamedTuple):
    """A `QualifiedTable` outside Dagster."""

    schema: str
    table: str


def identifier(table: QualifiedTable) -> sql.Identifier:
    """The quoted ``schema.table``."""
    return sql.Identifier(table.schema, table.table)


def copy_rows(conn: psycopg.Connection, target: sql.Composable, obj: Table, types: Sequence[str]):
    """Bulk-write a table's rows into `target` with `COPY ... FORMAT BINARY`."""
    names = sql.SQL(", ").join(map(sql.Identifier, obj.names))
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(target, names)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in obj.rows():
            copy.write_row(row)


def upsert(
    conn: psycopg.Connection,
    table: QualifiedTable,
    obj: Table,
    types: Sequence[str],
    primary_key: Sequence[str],
) -> None:
    """Insert `obj`'s rows, updating those whose `primary_key` exists: binary COPY into a
    temporary table, then one INSERT ... ON CONFLICT."""
    staging = sql.Identifier(f"_staging_{table.table}")
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            staging, identifier(table)
        )
    )
    copy_rows(conn, staging, obj, types)
    names = sql.SQL(", ").join(map(sql.Identifier, obj.names))
    updates = [n for n in obj.names if n not in primary_key]
    action = (
        sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in updates
            )
        )
        if updates
        else sql.SQL("DO NOTHING")
    )
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
            identifier(table),
            names,
            names,
            staging,
            sql.SQL(", ").join(map(sql.Identifier, primary_key)),
            action,
        )
    )
    conn.execute(sql.SQL("DROP TABLE pg_temp.{}").format(staging))


def upsert_in_parallel(
    url: str,
    table: QualifiedTable,
    obj: Table,
    types: Sequence[str],
    primary_key: Sequence[str],
    connections: int,
) -> None:
    """`upsert` split over ``connections`` connections at once, each its own transaction.

    Rows with the same key go to the same connection, so no two transactions wait on each
    other's rows. A failed part leaves the other parts stored (whole rows, not half-written).
    """
    parts: list[list[int]] = [[] for _ in range(connections)]
    for row, key in enumerate(zip(*(obj.columns[k] for k in primary_key), strict=True)):
        parts[hash(key) % connections].append(row)

    def write(rows: list[int]) -> None:
        with db.connection(url) as conn:
            upsert(conn, table, obj.take(rows), types, primary_key)

    with ThreadPoolExecutor(connections, thread_name_prefix="pgvector-write") as pool:
        list(pool.map(write, [rows for rows in parts if rows]))


def _hnsw_indexes(
    table: QualifiedTable, obj: Table, by: str, vector_type: str
) -> Iterator[tuple[str, str, int, Any]]:
    """(index name, vector column, dimension, value of `by`) of each index a write keeps."""
    for column, dim in obj.vector_dims().items():
        for value in sorted(set(obj.columns[by])):
            yield hnsw_index_name(table.table, column, value, dim, vector_type), column, dim, value


def hnsw_index_name(
    table: str, column: str, value: Any, dim: int, vector_type: str = VECTOR_TYPE
) -> str:
    """The name of `table`'s HNSW index on `column` (as `vector_type(dim)`) for the rows whose
    partition column is `value`."""
    key = f"{column}:{value}:{dim}" + ("" if vector_type == "vector" else f":{vector_type}")
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{table}_hnsw_{digest}"


def index_memory_mb(rows: int, dim: int, vector_type: str, m: int) -> int:
    """maintenance_work_mem (MB) for an HNSW build over `rows` vectors: pgvector's in-memory
    graph (each element's value, 2m layer-0 neighbours of 16 bytes, ~200 bytes of the rest,
    plus 10 %), within `INDEX_MEMORY_MIN_MB` and `INDEX_MEMORY_MAX_MB`."""
    per_row = ELEMENT_BYTES[vector_type] * dim + 32 * m + 200
    estimate = int(rows * per_row * 1.1 / 2**20) + 1
    return max(INDEX_MEMORY_MIN_MB, min(estimate, INDEX_MEMORY_MAX_MB))


def hnsw_indexes_exist(
    conn, table: QualifiedTable, obj: Table, by: str, vector_type: str = VECTOR_TYPE
) -> bool:
    """Whether every HNSW index that a write of `obj` keeps exists already."""
    return all(
        _exists(conn, table, name) for name, *_ in _hnsw_indexes(table, obj, by, vector_type)
    )


def _exists(conn, table: QualifiedTable, name: str) -> bool:
    return (
        conn.execute("SELECT to_regclass(%s)", (f'"{table.schema}"."{name}"',)).fetchone()[0]
        is not None
    )


def ensure_hnsw_indexes(
    conn,
    table: QualifiedTable,
    obj: Table,
    by: str,
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
    vector_type: str = VECTOR_TYPE,
) -> list[str]:
    """Keep one HNSW cosine index per value of column `by` on each vector column, over the
    vectors as `vector_type(d)` (an index that exists keeps the graph it was built with).

    A new index is built with `maintenance_work_mem` sized to its graph (`index_memory_mb`):
    the build is several times faster when the graph fits in memory."""
    created = []
    for name, column, dim, value in _hnsw_indexes(table, obj, by, vector_type):
        created.append(name)
        if _exists(conn, table, name):
            continue
        (rows,) = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {} = {}").format(
                identifier(table), sql.Identifier(by), sql.Literal(value)
            )
        ).fetchone()
        memory = index_memory_mb(rows, dim, vector_type, m)
        conn.execute(
            sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(f"{memory}MB"))
        )
        schema.create_hnsw_index(
            conn, name, identifier(table), column, vector_type, dim, (by, value), m, ef_construction
        )
    return created
