"""featuregen's dagster.yaml: rendered from the packaged template with the instance's
PostgreSQL URL, and rewritten only where featuregen wrote it and nobody edited it since."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from string import Template

import psycopg
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from featuregen_assets.core.store import db

VERSION = 4
_MARKER = re.compile(r"# featuregen dagster\.yaml v(\d+) sha256:([0-9a-f]{16})\n")
# What featuregen wrote before the marker line (v1 to v3, all with SQLite storage),
# recognised by their parsed content.
_POOLS = {"concurrency": {"pools": {"default_limit": 1}}}
_NO_TELEMETRY = {"telemetry": {"enabled": False}}
_RUN_MONITORING = {
    "run_monitoring": {
        "enabled": True,
        "poll_interval_seconds": 30,
        "free_slots_after_run_end_seconds": 30,
    }
}
UNMARKED_CONFIGS = (_POOLS, _POOLS | _NO_TELEMETRY, _POOLS | _RUN_MONITORING | _NO_TELEMETRY)


def instance_database_url(features_url: str) -> str:
    """The database of Dagster's instance, `<features database>_dagster` on the same server
    (created unless it exists): its URL, which Dagster reads through SQLAlchemy."""
    name = conninfo_to_dict(features_url).get("dbname") or "featuregen"
    return db.ensure_database(features_url, f"{name}_dagster")


def seconds_since_daemon_heartbeat(features_url: str) -> float | None:
    """Seconds since a Dagster daemon of the instance beside `features_url` last wrote its
    heartbeat (every 30 s while it runs); None when none ever has (no instance database)."""
    name = conninfo_to_dict(features_url).get("dbname") or "featuregen"
    try:
        with psycopg.connect(make_conninfo(features_url, dbname=f"{name}_dagster")) as conn:
            (age,) = conn.execute(
                "SELECT extract(epoch FROM (now() AT TIME ZONE 'UTC') - max(timestamp))"
                " FROM daemon_heartbeats"
            ).fetchone()
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return None
    return None if age is None else float(age)


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def sqlalchemy_url(postgres_url: str) -> str:
    """`postgres_url` naming psycopg2, the driver dagster-postgres is written for (SQLAlchemy
    2.1 takes psycopg 3 for a plain postgresql:// URL, and Dagster's NOTIFY fails on it)."""
    return "postgresql+psycopg2://" + postgres_url.split("://", 1)[1]


def render(postgres_url: str) -> str:
    """The dagster.yaml for an instance stored at `postgres_url`, with its marker line."""
    template = resources.files("featuregen_assets").joinpath("dagster.yaml.template").read_text()
    body = Template(template).substitute(
        postgres_url=json.dumps(sqlalchemy_url(postgres_url)),
        database=conninfo_to_dict(postgres_url).get("dbname", ""),
    )
    return f"# featuregen dagster.yaml v{VERSION} sha256:{_digest(body)}\n{body}"


def written_by_featuregen(text: str) -> bool:
    """Whether `text` is a dagster.yaml featuregen wrote, unedited since."""
    if marker := _MARKER.match(text):
        return marker[2] == _digest(text[marker.end() :])
    try:
        return yaml.safe_load(text) in UNMARKED_CONFIGS
    except yaml.YAMLError:
        return False


def uses_sqlite(text: str) -> bool:
    """Whether a dagster.yaml keeps the instance in SQLite (Dagster's default)."""
    config = yaml.safe_load(text) or {}
    return not any(key in config for key in ("storage", "run_storage", "event_log_storage"))


def write(config: Path, postgres_url: str) -> str | None:
    """Write featuregen's dagster.yaml to `config` unless a user's own is there.

    Returns the text it replaced ("" for none), or None when it left the file alone.
    """
    old = config.read_text() if config.exists() else ""
    current = render(postgres_url)
    if old == current or (old and not written_by_featuregen(old)):
        return None
    config.touch()
    config.chmod(0o600)  # an external server's URL may carry a password
    config.write_text(current)
    return old
