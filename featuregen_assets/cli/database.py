"""`featuregen summary`, `featuregen export` and `featuregen db`: what the store holds, and its
database."""

import argparse
from typing import TYPE_CHECKING

from featuregen_assets.cli.common import (
    CommandError,
    add_command,
    cli_settings,
    database_url,
    errors_as_lines,
    require_known_category,
)

if TYPE_CHECKING:
    from pathlib import Path

    from featuregen_assets.settings import Settings


def _cmd_summary(args: argparse.Namespace) -> int:
    from featuregen_assets.core.runtime import paths
    from featuregen_assets.core.runtime.checkpoint import step_checkpoints
    from featuregen_assets.core.store import db
    from featuregen_assets.core.store.summary import format_table, summarize

    settings = cli_settings()
    with db.connection(database_url(settings)) as conn:
        print(format_table(summarize(conn)))
    if waiting := step_checkpoints(paths.checkpoints_dir(settings.home)):
        print(
            "\ncheckpointed rows waiting for their step's next run (FEATUREGEN_HOME/checkpoints):"
        )
        for c in waiting:
            print(f"  {c.asset} {c.partition} {c.model}: {c.chunks} chunks, {c.bytes / 1e6:.1f} MB")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from featuregen_assets.core.store import db
    from featuregen_assets.core.store.export import export_vectors
    from featuregen_assets.core.store.registry import most_embedded_model

    settings = cli_settings()
    out = Path(args.out) if args.out else settings.home / "exports"
    with db.connection(database_url(settings)) as conn:
        model = args.model or most_embedded_model(conn)
        if args.category:
            require_known_category(conn, args.category)
        conn.commit()  # the export reads in a transaction of its own
        if model is None:
            raise CommandError("no image embeddings stored yet")
        _make_folder(args, out)
        with errors_as_lines(LookupError, OSError):
            done = export_vectors(
                conn, model, out, args.category or "all", args.format, args.category
            )
    print(f"{done.rows} rows of {model} (dimension {done.dim}):")
    for path in done.files:
        print(f"  {path}")
    return 0


def _make_folder(args: argparse.Namespace, out: "Path") -> None:
    """Make the export's folder, or say in one line why it cannot be (a usage error when
    --out named it)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = "it is not a folder" if out.exists() else error.strerror or str(error)
        message = f"cannot write the export into {out}: {reason}"
        if args.out:
            args.usage(message)
        raise CommandError(message) from None


DAEMON_BEATING_S = 75  # Dagster's daemon writes a heartbeat every 30 s while it runs


def _cmd_db(args: argparse.Namespace) -> int:
    from featuregen_assets.core.store import db

    settings = cli_settings()
    if args.action == "url":
        print(database_url(settings))
    elif args.action == "stop":
        _refuse_while_served(settings)
        if not args.force:
            _refuse_while_connected(settings)
        if db.stop_embedded_server(settings.home):
            print("stopped")
        elif settings.database_url is not None:
            print("no embedded server runs; FEATUREGEN_DATABASE_URL's server is yours to stop")
        else:
            print("not running")
    elif args.action == "compact":
        from featuregen_assets.core.store.maintenance import move_vectors_into_rows

        before, after = move_vectors_into_rows(database_url(settings))
        print(f"vectors stored out of line: {before / 1e6:.1f} MB before, {after / 1e6:.1f} MB now")
    elif args.action == "verify":
        return _verify_store(settings, repair=args.repair)
    return 0


def _refuse_while_served(settings: "Settings") -> None:
    """Refuse to stop the embedded server under a `featuregen serve` of the same home: its
    requests would fail (500, then 503 after a 10 s wait) until the server starts again."""
    from featuregen_assets.serve.discovery import running_server

    if settings.database_url is None and (url := running_server(settings.home)):
        raise CommandError(
            f"featuregen serve at {url} uses this database: stop it first (Ctrl-C),"
            " then `featuregen db stop`"
        )


def _refuse_while_connected(settings: "Settings") -> None:
    """Refuse to stop the embedded server while other processes use it (`featuregen dev`'s
    daemon, a run, psql): their work would fail until it starts again."""
    from featuregen_assets.core.store import db
    from featuregen_assets.launch.instance_config import seconds_since_daemon_heartbeat

    if settings.database_url is not None or not db.embedded_server_running(settings.home):
        return
    url = database_url(settings)
    count, beat = db.other_connections(url), seconds_since_daemon_heartbeat(url)
    users = [f"{count} other connection{'s are' if count > 1 else ' is'} open"] if count else []
    if beat is not None and beat < DAEMON_BEATING_S:
        users.append(f"a Dagster daemon (featuregen dev?) beat {beat:.0f} s ago")
    if users:
        raise CommandError(
            f"the embedded PostgreSQL is in use: {'; '.join(users)}. Stop what uses it, or"
            " run `featuregen db stop --force`"
        )


def _verify_store(settings: "Settings", *, repair: bool) -> int:
    """`featuregen db verify`: print what the store check finds; 1 when anything is left wrong."""
    from featuregen_assets.core.ingest.image_store import ImageStore
    from featuregen_assets.core.ingest.store_check import verify_store
    from featuregen_assets.core.runtime import paths
    from featuregen_assets.core.store import db

    with db.connection(database_url(settings)) as conn:
        report = verify_store(conn, ImageStore(paths.images_dir(settings.home)), repair=repair)
    for line in report.lines():
        print(line)
    left = report.problems - len(report.repaired)
    return 0 if left <= 0 else 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `summary`, `export`, `db` to the `featuregen` commands."""
    add_command(
        commands,
        "summary",
        _cmd_summary,
        help="Per-category counts read from the tables.",
        description="Links, downloads, failures by reason and rows per table, per category.",
    )

    export = add_command(
        commands,
        "export",
        _cmd_export,
        help="Write image ids, metadata and vectors to Parquet (or NumPy) files.",
        description="Write one row per downloaded image with a vector: image_id, category, url,"
        " caption, prompt and the vector, streamed in batches (bounded memory). parquet:"
        " <out>/<name>.parquet with the vector as a list of float32; npy: the vectors as"
        " <out>/<name>.npy (float32, rows × dimension) and the rest, in the same order, in"
        " <out>/<name>.parquet. <name> is the category, or all.",
    )
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--category", help="Only this category.")
    which.add_argument("--all", action="store_true", help="Every category.")
    export.add_argument("--format", choices=["parquet", "npy"], default="parquet")
    export.add_argument(
        "--out", metavar="DIR", help="Output directory (default: FEATUREGEN_HOME/exports)."
    )
    export.add_argument(
        "--model", help="The embedding model whose vectors to export (default: the most stored)."
    )

    database = add_command(
        commands,
        "db",
        _cmd_db,
        help="The database: print its URL (for psql), stop the embedded server, compact, verify.",
        description="`featuregen db url` starts the embedded server if needed and prints a URL"
        " for psql; `featuregen db stop` stops it; `featuregen db compact` moves vectors stored"
        " before migration 3 into their rows (VACUUM FULL: locks image_embeddings and rebuilds"
        " its indexes); `featuregen db verify [--repair]` checks every stored image file against"
        " the tables (sha256, orphans, temporary files, row keys).",
    )
    database.add_argument("action", choices=["url", "stop", "compact", "verify"])
    database.add_argument(
        "--force",
        action="store_true",
        help="stop: even while other processes hold connections (their work fails until the"
        " server starts again).",
    )
    database.add_argument(
        "--repair",
        action="store_true",
        help="verify: mark the links of damaged files for download again (the next run of"
        " their category fetches them), delete orphan files older than an hour and temporary"
        " files of dead writers.",
    )
