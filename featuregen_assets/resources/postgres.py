"""The Postgres resource: one database URL for every asset, with the schema migrated."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import dagster as dg
import psycopg
from pydantic import Field

from featuregen_assets.core.runtime import paths
from featuregen_assets.core.store import db, schema


@cache
def _migrated_url(url: str | None, home: str) -> str:
    resolved = url or db.database_url(Path(home))
    with db.connection(resolved) as conn:
        schema.migrate(conn)
    return resolved


class PostgresResource(dg.ConfigurableResource):
    """PostgreSQL with pgvector: `url` (FEATUREGEN_DATABASE_URL), else the embedded server."""

    url: str | None = Field(
        default=None,
        description="postgresql:// URL of a server with pgvector; unset = embedded server.",
    )
    home: str | None = Field(
        default=None, description="State directory of the embedded server (FEATUREGEN_HOME)."
    )

    def database_url(self) -> str:
        """The database URL, the embedded server started and the schema migrated if needed."""
        url = self.url or os.environ.get("FEATUREGEN_DATABASE_URL") or None
        return _migrated_url(url, str(Path(self.home) if self.home else paths.featuregen_home()))

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection that commits on success and rolls back on error."""
        with db.connection(self.database_url()) as conn:
            yield conn
