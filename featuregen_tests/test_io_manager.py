import dagster as dg
import numpy as np
import psycopg
import pytest

from featuregen_assets.core.store import db
from featuregen_assets.core.store.table import Table
from featuregen_assets.core.store.table_writes import TableName, upsert_in_parallel
from featuregen_assets.resources.io_manager import PgvectorIOManager
from featuregen_assets.resources.postgres import PostgresResource
from featuregen_assets.settings import Settings

colours = dg.StaticPartitionsDefinition(["red", "blue"])


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dg.asset(partitions_def=colours, metadata={"partition_expr": "colour"})
def swatches(context: dg.AssetExecutionContext) -> Table:
    n = 3 if context.partition_key == "red" else 2
    return Table(
        {
            "colour": [context.partition_key] * n,
            "name": [f"{context.partition_key}-{i}" for i in range(n)],
            "embedding": _vectors(n, 8, seed=len(context.partition_key)),
        }
    )


@dg.asset(partitions_def=colours, io_manager_key="mem")
def swatch_names(swatches: Table) -> list[str]:
    return list(swatches.columns["name"])


@dg.asset(
    ins={"swatches": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())}, io_manager_key="mem"
)
def all_swatches(swatches: Table) -> list[str]:
    return sorted(swatches.columns["name"])


def _resources(url: str) -> dict:
    postgres = PostgresResource(settings=Settings(), url=url)
    return {
        "io_manager": PgvectorIOManager(postgres=postgres),
        "postgres": postgres,
        "mem": dg.InMemoryIOManager(),
    }


def _rows(url: str, sql: str) -> list[tuple]:
    with db.connection(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def test_tables(database_url: str) -> str:
    """The test assets' own tables, made as a migration would (the IO manager makes none)."""
    with db.connection(database_url) as conn:
        conn.execute("CREATE TABLE swatches (colour text, name text, embedding vector)")
        conn.execute(
            "CREATE TABLE tiles (colour text, image_id text, model text, embedding vector,"
            " PRIMARY KEY (image_id, model))"
        )
    return database_url


def test_round_trip_and_rematerialisation_touches_only_its_partition(test_tables: str) -> None:
    database_url = test_tables
    resources = _resources(database_url)
    with dg.instance_for_test() as instance:
        for key in ("red", "blue"):
            result = dg.materialize(
                [swatches], partition_key=key, resources=resources, instance=instance
            )
            assert result.success
        blue_before = _rows(
            database_url, "SELECT name, embedding FROM swatches WHERE colour = 'blue'"
        )

        again = dg.materialize(
            [swatches], partition_key="red", resources=resources, instance=instance
        )
        metadata = again.asset_materializations_for_node("swatches")[0].metadata
        assert metadata["dagster/row_count"].value == 3
        assert metadata["rows_written"].value == 3
        assert metadata["dagster/table_name"].value == "featuregen.public.swatches"

        counts = _rows(
            database_url, "SELECT colour, count(*) FROM swatches GROUP BY colour ORDER BY 1"
        )
        assert counts == [("blue", 2), ("red", 3)]
        blue_after = _rows(
            database_url, "SELECT name, embedding FROM swatches WHERE colour = 'blue'"
        )
        assert [n for n, _ in blue_after] == [n for n, _ in blue_before]
        assert all(
            np.array_equal(a[1].to_numpy(), b[1].to_numpy())
            for a, b in zip(blue_before, blue_after, strict=True)
        )

        downstream = dg.materialize(
            [swatches.to_source_asset(), swatch_names],
            partition_key="blue",
            resources=resources,
            instance=instance,
        )
        assert downstream.output_for_node("swatch_names") == ["blue-0", "blue-1"]

        everything = dg.materialize(
            [swatches.to_source_asset(), all_swatches], resources=resources, instance=instance
        )
        assert everything.output_for_node("all_swatches") == [
            "blue-0",
            "blue-1",
            "red-0",
            "red-1",
            "red-2",
        ]


def test_vectors_round_trip_as_float32_with_their_dimension(test_tables: str) -> None:
    database_url = test_tables
    resources = _resources(database_url)
    with dg.instance_for_test() as instance:
        dg.materialize([swatches], partition_key="red", resources=resources, instance=instance)
    query = "SELECT embedding, vector_dims(embedding) FROM swatches ORDER BY name"
    stored = _rows(database_url, query)
    expected = _vectors(3, 8, seed=3)
    for (vector, dims), want in zip(stored, expected, strict=True):
        assert dims == 8
        assert vector.to_numpy().dtype == np.float32
        np.testing.assert_array_equal(vector.to_numpy(), want)


@dg.asset(
    partitions_def=colours,
    metadata={
        "partition_expr": "raw_images.category",
        "primary_key": ["image_id", "model"],
        "hnsw_by": "model",
        "hnsw_m": 24,
    },
)
def image_embeddings(context: dg.AssetExecutionContext) -> Table:
    ids = {"red": ["a", "b"], "blue": ["b", "c"]}[context.partition_key]
    return Table({"image_id": ids, "model": ["m@1"] * 2, "embedding": _vectors(2, 4, seed=7)})


def test_upserted_table_keeps_other_rows_and_indexes_each_model(database_url: str) -> None:
    with db.connection(database_url) as conn:
        conn.execute(
            "INSERT INTO raw_images (category, url, status, image_id) VALUES"
            " ('red', 'u1', 'ok', 'a'), ('red', 'u2', 'ok', 'b'),"
            " ('blue', 'u3', 'ok', 'b'), ('blue', 'u4', 'ok', 'c')"
        )
    resources = _resources(database_url)
    with dg.instance_for_test() as instance:
        for key in ("red", "blue", "red"):
            result = dg.materialize(
                [image_embeddings], partition_key=key, resources=resources, instance=instance
            )
            metadata = result.asset_materializations_for_node("image_embeddings")[0].metadata
            assert metadata["rows_written"].value == 2
    assert _rows(database_url, "SELECT image_id FROM image_embeddings ORDER BY 1") == [
        ("a",),
        ("b",),
        ("c",),
    ]
    indexes = _rows(
        database_url,
        "SELECT indexdef FROM pg_indexes"
        " WHERE tablename = 'image_embeddings' AND indexdef LIKE '%hnsw%'",
    )
    assert len(indexes) == 1
    assert "vector(4)" in indexes[0][0] and "vector_cosine_ops" in indexes[0][0]
    assert "m='24'" in indexes[0][0] and "ef_construction='64'" in indexes[0][0]


def test_unknown_column_is_a_clear_error(database_url: str) -> None:
    @dg.asset(metadata={"primary_key": ["image_id", "model"]}, name="image_embeddings")
    def bad() -> Table:
        return Table({"image_id": ["x"], "colour": ["red"]})

    with dg.instance_for_test() as instance, pytest.raises(ValueError, match="no columns"):
        dg.materialize([bad], resources=_resources(database_url), instance=instance)


def test_a_table_no_migration_made_is_a_clear_error(database_url: str) -> None:
    resources = _resources(database_url)
    missing = pytest.raises(ValueError, match="no table public.swatches: .* migrations")
    with dg.instance_for_test() as instance, missing:
        dg.materialize([swatches], partition_key="red", resources=resources, instance=instance)
    assert _rows(database_url, "SELECT to_regclass('swatches')") == [(None,)]


TILES = 1_500  # three writers' worth of rows (ROWS_PER_WRITER each)


@dg.asset(
    partitions_def=colours,
    metadata={"partition_expr": "colour", "primary_key": ["image_id", "model"], "hnsw_by": "model"},
)
def tiles(context: dg.AssetExecutionContext) -> Table:
    colour = context.partition_key
    seed = context.run.tags.get("seed", "0")
    return Table(
        {
            "colour": [colour] * TILES,
            "image_id": [f"{colour}-{i}" for i in range(TILES)],
            "model": ["m@1"] * TILES,
            "embedding": _vectors(TILES, 8, seed=len(colour) + 10 * int(seed)),
        }
    )


def test_upserts_into_an_existing_index_are_split_over_connections(
    test_tables: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = test_tables
    from featuregen_assets.resources import io_manager

    splits: list[int] = []
    original = io_manager.upsert_in_parallel

    def recording(url, table_slice, obj, types, primary_key, connections):
        splits.append(connections)
        original(url, table_slice, obj, types, primary_key, connections)

    monkeypatch.setattr(io_manager, "upsert_in_parallel", recording)
    postgres = PostgresResource(settings=Settings(), url=database_url)
    resources = {"io_manager": PgvectorIOManager(postgres=postgres, write_connections=3)}
    with dg.instance_for_test() as instance:
        for key, seed in (("red", 0), ("blue", 0), ("red", 1)):
            result = dg.materialize(
                [tiles],
                partition_key=key,
                resources=resources,
                instance=instance,
                tags={"seed": str(seed)},
            )
            assert result.success
    # the first write builds the index after one COPY; the next two go into the graph
    assert splits == [3, 3]
    stored = dict(_rows(database_url, "SELECT image_id, embedding FROM tiles"))
    assert len(stored) == 2 * TILES
    for colour, seed in (("red", 1), ("blue", 0)):
        expected = _vectors(TILES, 8, seed=len(colour) + 10 * seed)
        for i in range(TILES):
            np.testing.assert_array_equal(stored[f"{colour}-{i}"].to_numpy(), expected[i])
    with db.connection(database_url) as conn:  # the graph holds every row: found through it
        conn.execute("SET LOCAL enable_seqscan = off")
        query = stored["blue-7"].to_numpy()
        nearest = conn.execute(
            "SELECT image_id FROM tiles WHERE model = 'm@1'"
            " ORDER BY embedding::vector(8) <=> %s::vector(8) LIMIT 1",
            (query,),
        ).fetchone()
    assert nearest == ("blue-7",)


def test_a_failed_part_of_a_split_upsert_loses_nothing_stored(test_tables: str) -> None:
    database_url = test_tables
    postgres = PostgresResource(settings=Settings(), url=database_url)
    resources = {"io_manager": PgvectorIOManager(postgres=postgres, write_connections=3)}
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            [tiles], partition_key="red", resources=resources, instance=instance
        ).success
    before = dict(_rows(database_url, "SELECT image_id, embedding FROM tiles"))

    vectors = _vectors(TILES, 8, seed=99)
    vectors[7] = np.nan  # pgvector refuses NaN: the part holding this row fails
    ids = [f"blue-{i}" for i in range(TILES)]
    table = Table(
        {
            "colour": ["blue"] * TILES,
            "image_id": ids,
            "model": ["m@1"] * TILES,
            "embedding": vectors,
        }
    )
    types = ["text", "text", "text", "vector"]
    with pytest.raises(psycopg.errors.DataException, match="NaN"):
        upsert_in_parallel(
            database_url, TableName("public", "tiles"), table, types, ["image_id", "model"], 3
        )

    after = dict(_rows(database_url, "SELECT image_id, embedding FROM tiles"))
    for image_id, vector in before.items():  # earlier rows untouched
        np.testing.assert_array_equal(after[image_id].to_numpy(), vector.to_numpy())
    written = {k: v for k, v in after.items() if k.startswith("blue-")}
    assert "blue-7" not in written
    assert 0 < len(written) < TILES  # the other parts committed, each whole
    for image_id, vector in written.items():
        np.testing.assert_array_equal(vector.to_numpy(), vectors[int(image_id.split("-")[1])])
