"""`featuregen dev`: dagster dev on the instance in FEATUREGEN_HOME/dagster."""

import argparse
import os
import sys

from featuregen_assets.cli.common import add_command, cli_settings


def _cmd_dev(args: argparse.Namespace) -> int:
    from featuregen_assets import KNOWN_WARNINGS_ENV
    from featuregen_assets.core.runtime.processes import run_forwarding_signals
    from featuregen_assets.launch.runs import dagster_dev_command, prepare_dagster_home

    home = prepare_dagster_home(cli_settings())
    command = dagster_dev_command(args.extra, home)
    inherited = os.environ.get("PYTHONWARNINGS")
    warnings = f"{inherited},{KNOWN_WARNINGS_ENV}" if inherited else KNOWN_WARNINGS_ENV
    print(f"DAGSTER_HOME={home}", file=sys.stderr)
    return run_forwarding_signals(command, {**os.environ, "PYTHONWARNINGS": warnings})


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `dev` to the `featuregen` commands."""
    dev = add_command(
        commands,
        "dev",
        _cmd_dev,
        help="`dagster dev` on the instance in FEATUREGEN_HOME/dagster (UI + daemon).",
        description="Prepare DAGSTER_HOME (default FEATUREGEN_HOME/dagster, GPU pool limited to"
        " one step at a time) and run `dagster dev` on the code location `featuregen`, as"
        " workspace.yaml names it (so sensor state and cursors are the same whichever way the UI"
        " starts). Every other argument goes to dagster dev unchanged (e.g. -h 127.0.0.1 -p"
        " 3001; -w/-m/-f choose what to load instead); `dagster dev --help` lists them.",
        add_help=False,
        allow_abbrev=False,
    )
    dev.add_argument("--help", action="help", help="Show this message and exit.")
