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

from featuregen_assets.core.store import db
from featuregen_assets.core.store.table import Table

INDEX_MEMORY = "1GB"
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64  # pgvector's defaults
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
    conn.execute(sql.SQL("DROP TABLE {}").format(staging))


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
    table: QualifiedTable, obj: Table, by: str
) -> Iterator[tuple[str, str, int, Any]]:
    """(index name, vector column, dimension, value of `by`) of each index a write keeps."""
    for column, dim in obj.vector_dims().items():
        for value in sorted(set(obj.columns[by])):
            yield hnsw_index_name(table.table, column, value, dim), column, dim, value


def hnsw_index_name(table: str, column: str, value: Any, dim: int) -> str:
    """The name of `table`'s HNSW index on `column` (as `vector(dim)`) for the rows whose
    partition column is `value`."""
    digest = hashlib.sha256(f"{column}:{value}:{dim}".encode()).hexdigest()[:12]
    return f"{table}_hnsw_{digest}"


def hnsw_indexes_exist(conn, table: QualifiedTable, obj: Table, by: str) -> bool:
    """Whether every HNSW index that a write of `obj` keeps exists already."""
    return all(
        conn.execute("SELECT to_regclass(%s)", (f'"{table.schema}"."{name}"',)).fetchone()[0]
        is not None
        for name, *_ in _hnsw_indexes(table, obj, by)
    )


def ensure_hnsw_indexes(
    conn,
    table: QualifiedTable,
    obj: Table,
    by: str,
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
) -> list[str]:
    """Keep one HNSW cosine index per value of column `by` on each vector column (an index
    that exists keeps the graph parameters it was built with)."""
    created = []
    # HNSW builds several times faster when its graph fits in memory (768-d: ~3 kB a row).
    conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(INDEX_MEMORY)))
    for name, column, dim, value in _hnsw_indexes(table, obj, by):
        conn.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw "
                "(({}::vector({})) vector_cosine_ops) WITH (m = {}, ef_construction = {})"
                " WHERE {} = {}"
            ).format(
                sql.Identifier(name),
                identifier(table),
                sql.Identifier(column),
                sql.Literal(dim),
                sql.Literal(m),
                sql.Literal(ef_construction),
                sql.Identifier(by),
                sql.Literal(value),
            )
        )
        created.append(name)
    return created
