"""`featuregen`: run category pipelines, the offline demo, search, and manage the database.

The commands in groups, each module with its parsers beside their handlers: run_train
(run, train), demo_models (demo, models), search_serve (search, serve), report_import
(report, import), database (summary, export, db) and dev.
"""

import argparse
import os
import sys
from collections.abc import Sequence

from featuregen_assets.cli import database, demo_models, dev, report_import, run_train, search_serve
from featuregen_assets.cli.common import CommandError, Parser

GROUPS = (run_train, demo_models, search_serve, report_import, database, dev)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = Parser(
        prog="featuregen",
        description="Image links → DINOv2 feature store in PostgreSQL + pgvector, via Dagster.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    for group in GROUPS:
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `featuregen` command."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # No model-loading bars (read when huggingface_hub is imported; no transformers import here).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "dev":
        args.usage(f"unrecognized arguments: {' '.join(extra)}")  # the command's own help
    args.extra = extra
    try:
        return args.func(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.status
