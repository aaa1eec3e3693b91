"""The pgvector IO manager, in the shape of Dagster's database IO managers (dagster-duckdb).

It writes `Table`s into tables that the migrations (`core.store.schema`) created: migrations are
the only DDL, and a table that no migration created is a clear error, not inferred here.

Two writing paths, one per kind of table:
- `image_embeddings` and `image_prompts` (the feature tables, computed by a model step that
  returns its rows at the end) are written here, after the step: the design card names a
  pgvector IO manager, and it keeps the bulk writes, upserts, HNSW indexes and checkpoint
  cleanup out of the assets.
- `raw_images` commits its rows itself, in batches as downloads finish
  (`core.ingest.ingest`), so a killed run keeps what it fetched; an IO manager writes once,
  when the step has returned, and could not.

Definition metadata on an asset steers it:
- `partition_expr`: the column holding the partition key. A feature table has none (an image
  is stored once whatever its categories): `raw_images.category` names the `raw_images`
  column, and its partition's rows are then those of the partition's images, by `image_id`.
  Dagster's select (the `Query` metadata, `load_input`) uses it.
- `primary_key`: columns identifying a row. With it, writes upsert (rows of other partitions
  and earlier rows are kept); without it, a write replaces the partition's rows and reports
  their count (`dagster/row_count`). An upserting asset reports its own.
- `hnsw_by`: a column (e.g. `model`) per distinct value of which an HNSW cosine index is kept
  on the vector column, cast to its dimension (pgvector indexes need a fixed dimension);
  `hnsw_m` / `hnsw_ef_construction` set a new index's graph.

Writes go through `core.store.table_writes` (binary COPY, upserts, HNSW indexes); an upsert
into indexes that already exist is split over up to `write_connections` connections at once.
Once a partition's rows are committed, the step's checkpoint of them
(`core.runtime.checkpoint`) is deleted.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from dagster._core.storage.db_io_manager import (
    DbClient,
    DbIOManager,
    DbTypeHandler,
    TablePartitionDimension,
    TableSlice,
    static_where_clause,
)
from psycopg import sql
from pydantic import Field

from featuregen_assets.core.runtime import paths
from featuregen_assets.core.runtime.checkpoint import discard_run
from featuregen_assets.core.runtime.processes import usable_cpus
from featuregen_assets.core.store import db
from featuregen_assets.core.store.table import Table
from featuregen_assets.core.store.table_writes import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    ROWS_PER_WRITER,
    copy_rows,
    ensure_hnsw_indexes,
    hnsw_indexes_exist,
    identifier,
    upsert,
    upsert_in_parallel,
)
from featuregen_assets.resources.postgres import PostgresResource

PGVECTOR_IO_MANAGER = "pgvector_io_manager"  # the resource key the feature assets write through


def _partition_condition(dimension: TablePartitionDimension) -> str:
    source, dot, column = dimension.partition_expr.rpartition(".")
    if dot:  # a column of `source`: the rows of the partition's images
        keys = static_where_clause(dimension._replace(partition_expr=column))
        return f"image_id IN (SELECT image_id FROM {source} WHERE {keys})"
    return static_where_clause(dimension)


def _where(table_slice: TableSlice) -> str:
    conditions = [_partition_condition(d) for d in table_slice.partition_dimensions or []]
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


class PgvectorDbClient(DbClient[psycopg.Connection]):
    """Connects to the featuregen database and selects or deletes table slices."""

    def __init__(self, url: str) -> None:
        self.url = url

    @contextmanager
    def connect(self, context, table_slice: TableSlice) -> Iterator[psycopg.Connection]:
        with db.connection(self.url) as conn:
            yield conn

    def ensure_schema_exists(self, context, table_slice: TableSlice, connection) -> None:
        """Creates nothing: the table must exist, made by a migration."""
        if not _column_types(connection, table_slice):
            raise ValueError(
                f"no table {table_slice.schema}.{table_slice.table}: tables are created only by"
                " the migrations in featuregen_assets/core/store/schema.py; add one for it"
            )

    def delete_table_slice(self, context, table_slice: TableSlice, connection) -> None:
        if (context.definition_metadata or {}).get("primary_key"):
            return  # upserted tables keep their rows
        statement = sql.SQL("DELETE FROM {}").format(identifier(table_slice)).as_string(connection)
        connection.execute(statement + _where(table_slice))

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        columns = ", ".join(table_slice.columns) if table_slice.columns else "*"
        return (
            f"SELECT {columns} FROM {table_slice.schema}.{table_slice.table}{_where(table_slice)}"
        )


def _column_types(conn: psycopg.Connection, table_slice: TableSlice) -> dict[str, str]:
    rows = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod)
        FROM pg_attribute a
        WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
        """,
        (f'"{table_slice.schema}"."{table_slice.table}"',),
    ).fetchall()
    return dict(rows)


class TableTypeHandler(DbTypeHandler[Table]):
    """Writes `Table`s with binary COPY (vectors as float32 arrays) and reads them back.

    ``url`` and ``write_connections``: where and over how many connections at most an upsert
    into an HNSW-indexed table goes (`upsert_in_parallel`).
    """

    def __init__(self, url: str, write_connections: int) -> None:
        self.url, self.write_connections = url, write_connections

    def _writers(self, connection, table_slice: TableSlice, obj: Table, by: str | None) -> int:
        """Connections for an upsert: one, unless `obj` goes into indexes that exist."""
        writers = min(self.write_connections, len(obj) // ROWS_PER_WRITER)
        if writers < 2 or not by or not hnsw_indexes_exist(connection, table_slice, obj, by):
            return 1
        return writers

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: Table, connection
    ) -> Mapping[str, Any]:
        metadata = context.definition_metadata or {}
        types = _column_types(connection, table_slice)
        missing = [name for name in obj.names if name not in types]
        if missing:
            raise ValueError(f"{table_slice.table} has no columns {missing}")
        column_types = [types[name] for name in obj.names]
        if len(obj):
            key, by = metadata.get("primary_key"), metadata.get("hnsw_by")
            if not key:
                copy_rows(connection, identifier(table_slice), obj, column_types)
            elif (writers := self._writers(connection, table_slice, obj, by)) > 1:
                upsert_in_parallel(self.url, table_slice, obj, column_types, key, writers)
            else:
                upsert(connection, table_slice, obj, column_types, key)
            if by:
                ensure_hnsw_indexes(
                    connection,
                    table_slice,
                    obj,
                    by,
                    m=metadata.get("hnsw_m", HNSW_M),
                    ef_construction=metadata.get("hnsw_ef_construction", HNSW_EF_CONSTRUCTION),
                )
        written = {"rows_written": len(obj), "table": f"{table_slice.schema}.{table_slice.table}"}
        if metadata.get("primary_key"):
            return written
        count = sql.SQL("SELECT count(*) FROM {}").format(identifier(table_slice))
        [(rows,)] = connection.execute(count.as_string(connection) + _where(table_slice)).fetchall()
        return {**written, "dagster/row_count": rows}

    def load_input(self, context: dg.InputContext, table_slice: TableSlice, connection) -> Table:
        with connection.cursor() as cur:
            cur.execute(PgvectorDbClient.get_select_statement(table_slice))
            names = [column.name for column in cur.description]
            rows = cur.fetchall()
        return Table.from_rows([dict(zip(names, row, strict=True)) for row in rows], names)

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [Table]


class _CheckpointDiscardingIOManager(DbIOManager):
    """Once a partition's rows are committed, deletes the checkpoint its step kept of them."""

    def __init__(self, checkpoints_dir: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.checkpoints_dir = checkpoints_dir

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        super().handle_output(context, obj)
        if context.has_asset_key and context.has_asset_partitions:
            for partition in context.asset_partition_keys:
                asset = context.asset_key.to_user_string()
                discard_run(self.checkpoints_dir, asset, partition, context.run_id)


class PgvectorIOManager(dg.ConfigurableIOManagerFactory):
    """Stores asset outputs (`Table`) in PostgreSQL + pgvector tables named after the asset."""

    postgres: PostgresResource
    db_schema: str = "public"
    write_connections: int | None = Field(
        default=None,
        description="Connections that upsert into an HNSW-indexed table at once"
        " (default: this machine's CPUs, at most 8).",
    )

    def create_io_manager(self, context) -> DbIOManager:
        url = self.postgres.database_url()
        writers = self.write_connections or min(8, usable_cpus())
        return _CheckpointDiscardingIOManager(
            checkpoints_dir=paths.checkpoints_dir(self.postgres.settings.home),
            type_handlers=[TableTypeHandler(url, writers)],
            db_client=PgvectorDbClient(url),
            database="featuregen",
            schema=self.db_schema,
            io_manager_name="PgvectorIOManager",
            default_load_type=Table,
        )
