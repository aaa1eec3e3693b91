"""The database's DDL, all of it: the schema as ordered migrations (applied once each and
recorded), the database and the vector extension they need, and the per-model HNSW indexes
(one per model and dimension, so made when a model's first vectors are written)."""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "feature store tables",
        """
        CREATE EXTENSION IF NOT EXISTS vector;

        CREATE TABLE raw_images (
            category      text        NOT NULL,
            url           text        NOT NULL,
            status        text        NOT NULL,
            error         text,
            image_id      text,
            path          text,
            width         integer,
            height        integer,
            mime          text,
            format        text,
            bytes         bigint,
            caption       text,
            attempts      integer     NOT NULL DEFAULT 1,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (category, url),
            CHECK ((status = 'ok') = (image_id IS NOT NULL))
        );
        CREATE INDEX raw_images_image_id ON raw_images (image_id);
        CREATE INDEX raw_images_status ON raw_images (category, status);

        CREATE TABLE image_prompts (
            image_id      text        NOT NULL,
            model         text        NOT NULL,
            source        text        NOT NULL,
            prompt        text        NOT NULL,
            truncated     boolean     NOT NULL DEFAULT false,
            created_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (image_id, model, source)
        );

        CREATE TABLE image_embeddings (
            image_id      text        NOT NULL,
            model         text        NOT NULL,
            embedding     vector      NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (image_id, model)
        );
        """,
    ),
    (
        2,
        "trained model registry",
        """
        CREATE TABLE models (
            name          text        NOT NULL,
            version       text        NOT NULL,
            path          text        NOT NULL,
            embedding_model text      NOT NULL,
            config        jsonb       NOT NULL,
            metrics       jsonb       NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (name, version)
        );
        CREATE INDEX models_latest ON models (name, created_at DESC);
        """,
    ),
    (
        3,
        "vectors stored inline",
        # A 768-d vector (3 kB) is over the 2 kB TOAST threshold: stored out of line, it leaves
        # a heap too small for PostgreSQL to give an index build parallel workers, and exact
        # scans fetch each vector from TOAST (benchmarks/vector_storage.py). MAIN keeps it in
        # the row unless the row cannot fit a page. Rows already stored keep their storage
        # until `featuregen db compact` (core/maintenance.py) rewrites the table.
        """
        ALTER TABLE image_embeddings ALTER COLUMN embedding SET STORAGE MAIN;
        """,
    ),
    (
        4,
        "raw_images keyed by a hash of the URL",
        # A btree entry holds at most ~2.7 kB: a longer URL in the primary key failed its whole
        # batch of rows, run after run. The key is now the sha256 of the URL as written
        # (`links.url_key` computes the same in Python), which re-keys every existing row
        # without merging any; `url` keeps the URL (cut at netpolicy.MAX_URL_LENGTH for a
        # `url_too_long` row). An insert that names no url_key gets the hash of its url.
        """
        ALTER TABLE raw_images ADD COLUMN url_key text;
        UPDATE raw_images SET url_key = encode(sha256(convert_to(url, 'UTF8')), 'hex');
        ALTER TABLE raw_images ALTER COLUMN url_key SET NOT NULL;
        ALTER TABLE raw_images DROP CONSTRAINT raw_images_pkey;
        ALTER TABLE raw_images ADD CONSTRAINT raw_images_pkey PRIMARY KEY (category, url_key);

        CREATE OR REPLACE FUNCTION raw_images_default_url_key() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            NEW.url_key := coalesce(
                NEW.url_key, encode(sha256(convert_to(NEW.url, 'UTF8')), 'hex'));
            RETURN NEW;
        END $$;
        CREATE TRIGGER raw_images_default_url_key BEFORE INSERT ON raw_images
            FOR EACH ROW EXECUTE FUNCTION raw_images_default_url_key();
        """,
    ),
    (
        5,
        "link captions kept per category",
        # Link captions were one image_prompts row per image (model 'link-file'): the last
        # category to run overwrote another category's caption of the same image. They are now
        # model 'link-file:<category>'. Each old row goes to every category whose link has that
        # caption; one that matches none (its caption changed since) is kept as it is. The
        # other categories' captions are written again by their next image_prompts run.
        """
        INSERT INTO image_prompts (image_id, model, source, prompt, truncated, created_at)
        SELECT DISTINCT ON (p.image_id, r.category)
            p.image_id, 'link-file:' || r.category, p.source, p.prompt, p.truncated, p.created_at
        FROM image_prompts p
        JOIN raw_images r ON r.image_id = p.image_id AND r.caption = p.prompt
        WHERE p.model = 'link-file' AND p.source = 'link_caption'
        ORDER BY p.image_id, r.category
        ON CONFLICT DO NOTHING;
        DELETE FROM image_prompts p
        WHERE p.model = 'link-file' AND p.source = 'link_caption' AND EXISTS (
            SELECT 1 FROM image_prompts q
            WHERE q.image_id = p.image_id AND q.source = p.source
              AND q.model LIKE 'link-file:%' AND q.prompt = p.prompt);
        """,
    ),
    (
        6,
        "full-text search over prompts",
        # Keyword search ranks every match (ts_rank_cd reads the tsvector of each), so the
        # tsvector is stored rather than an index expression recomputed per matching row.
        # Generated prompts and link captions are both rows of image_prompts.
        """
        ALTER TABLE image_prompts ADD COLUMN search tsvector
            GENERATED ALWAYS AS (to_tsvector('english', prompt)) STORED;
        CREATE INDEX image_prompts_search ON image_prompts USING gin (search);
        """,
    ),
    (
        7,
        "sentence vectors of image texts",
        # One vector per text of image_prompts (a link caption or a generated prompt, kept apart
        # by the prompt's model and source) per sentence encoder (`model`). `text_sha` is the
        # sha256 of the text embedded: a caption changed since is embedded again. Texts from a
        # random-weight captioner (the tiny profile) are marked, and left out of search unless
        # asked for. The IO manager keeps one HNSW index per `model`, as for image_embeddings.
        """
        CREATE TABLE prompt_embeddings (
            image_id        text        NOT NULL,
            model           text        NOT NULL,
            prompt_model    text        NOT NULL,
            source          text        NOT NULL,
            text_sha        text        NOT NULL,
            random_weights  boolean     NOT NULL DEFAULT false,
            embedding       vector      NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (image_id, model, prompt_model, source)
        );
        ALTER TABLE prompt_embeddings ALTER COLUMN embedding SET STORAGE MAIN;
        """,
    ),
    (
        8,
        "models promoted explicitly",
        # Search serves the last promoted version of a model, not the newest trained: a new
        # version replaces it only when promoted (`featuregen models promote`, or by training
        # when it beats the served one on validation). The newest version of each model is
        # promoted here, so what was served stays served.
        """
        ALTER TABLE models ADD COLUMN promoted_at timestamptz;
        UPDATE models m SET promoted_at = m.created_at
        WHERE m.created_at = (SELECT max(created_at) FROM models n WHERE n.name = m.name);
        """,
    ),
    (
        12,
        "raw_images records its file's modification time",
        # The file's st_mtime_ns when its bytes last hashed to image_id: a category's next
        # run hashes a stored file again only when its size or this time has changed.
        # NULL (rows from before): hashed once by the next run, then recorded.
        """
        ALTER TABLE raw_images ADD COLUMN file_mtime_ns bigint;
        """,
    ),
)


def current_version(conn: psycopg.Connection) -> int:
    """The highest migration applied to the database, 0 for an empty one."""
    exists = conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone()[0]
    if exists is None:
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


def migrate(conn: psycopg.Connection) -> int:
    """Apply every migration not yet applied, in order, under an advisory lock (also one
    numbered below the highest applied: numbers are reserved per issue, so a lower one can
    land later); return the highest applied."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer     PRIMARY KEY,
                description text        NOT NULL,
                checksum    text        NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        applied = {n for (n,) in conn.execute("SELECT version FROM schema_migrations")}
        for number, description, sql in MIGRATIONS:
            if number in applied:
                continue
            conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, description, checksum)"
                " VALUES (%s, %s, %s)",
                (number, description, hashlib.sha256(sql.encode()).hexdigest()[:16]),
            )
        version = current_version(conn)
    return version


_LOCK_ID = int.from_bytes(hashlib.sha256(b"featuregen-schema").digest()[:7], "big")


def create_database(conn: psycopg.Connection, database: str) -> None:
    """Create `database` on the server `conn` (autocommit) is connected to."""
    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def create_vector_extension(conn: psycopg.Connection) -> None:
    """Create pgvector's extension unless it exists (migration 1 does too), one creator at a
    time, and commit."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('featuregen-create-extension'))")
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.commit()


def create_hnsw_index(
    conn: psycopg.Connection,
    name: str,
    table: sql.Composable,
    column: str,
    vector_type: str,
    dim: int,
    where: tuple[str, object],
    m: int,
    ef_construction: int,
) -> None:
    """Create the partial HNSW cosine index `name` on `table` over `column` as
    `vector_type(dim)`, for the rows where column `where[0]` equals `where[1]`."""
    by, value = where
    conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw "
            "(({}::{}({})) {}) WITH (m = {}, ef_construction = {})"
            " WHERE {} = {}"
        ).format(
            sql.Identifier(name),
            table,
            sql.Identifier(column),
            sql.SQL(vector_type),
            sql.Literal(dim),
            sql.SQL(f"{vector_type}_cosine_ops"),
            sql.Literal(m),
            sql.Literal(ef_construction),
            sql.Identifier(by),
            sql.Literal(value),
        )
    )
