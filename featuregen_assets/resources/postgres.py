"""The Postgres resource: one database URL for every asset, with the schema migrated."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field

from featuregen_assets.core.store import db
from featuregen_assets.settings import Settings


class PostgresResource(dg.ConfigurableResource):
    """PostgreSQL with pgvector: `url`, else the settings' (FEATUREGEN_DATABASE_URL), else the
    embedded server under FEATUREGEN_HOME."""

    settings: dg.ResourceDependency[Settings]
    url: str | None = Field(
        default=None,
        description="postgresql:// URL of a server with pgvector; unset = the settings' URL.",
    )

    def database_url(self) -> str:
        """The database URL, the embedded server started and the schema migrated if needed."""
        return db.migrated_url(self.url or self.settings.database_url, self.settings.home)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection that commits on success and rolls back on error."""
        with db.connection(self.database_url()) as conn:
            yield conn
