"""What every command group shares: its settings, the database, argument types, errors."""

import argparse
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from featuregen_assets.settings import Settings

# What the CLI changes from the settings' defaults; a FEATUREGEN_* variable set still wins.
CLI_DEFAULTS = {"FEATUREGEN_PROGRESS": "bar"}
DEMO_DEFAULTS = {**CLI_DEFAULTS, "FEATUREGEN_MODELS": "tiny"}
VERBOSE_HELP = "Print Dagster's whole run log (default: the steps' own lines, a failure summary)."

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """Why a command cannot go on: `main` prints `error: <message>` on stderr and exits with
    `status`."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class BadSetting(CommandError, ValueError):
    """A variable the settings refuse: one line and exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=2)


@contextmanager
def errors_as_lines(*kinds: type[BaseException], status: int = 1) -> Iterator[None]:
    """Turn an exception of `kinds` raised inside into a `CommandError` of `status`."""
    try:
        yield
    except kinds as error:
        raise CommandError(str(error), status) from None


def cli_settings(defaults: Mapping[str, str] = CLI_DEFAULTS) -> "Settings":
    """The settings of this command: FEATUREGEN_* variables over `defaults`."""
    from featuregen_assets.settings import Settings

    try:
        return Settings.from_env({**defaults, **os.environ})
    except ValueError as error:
        raise BadSetting(str(error)) from None


def database_url(settings: "Settings") -> str:
    """The database of `settings`, with the schema migrated (as the Postgres resource does)."""
    from featuregen_assets.core.store import db

    return db.migrated_url(settings.database_url, settings.home)


def require_known_category(conn, category: str) -> None:
    """Refuse (status 2) a category with no stored image, listing those that have."""
    from featuregen_assets.core.search.hits import known_categories

    known = known_categories(conn)
    if category not in known:
        raise CommandError(
            f"unknown category {category!r}; known: {', '.join(known) or 'none'}", status=2
        )


def require_valid_category(category: str) -> None:
    """Refuse (status 2) a category name that cannot be a link file's (`category_error`)."""
    from featuregen_assets.core.ingest.links import category_error

    if reason := category_error(category):
        raise CommandError(f"bad category {category!r}: {reason}", status=2)


def add_command(
    commands: argparse._SubParsersAction, name: str, handler: Handler, **kwargs: Any
) -> argparse.ArgumentParser:
    """Add the command `name`, run by `handler` (`add_parser`'s `kwargs`: help, description);
    `args.usage(message)` is the command's usage error."""
    parser = commands.add_parser(name, **kwargs)
    parser.set_defaults(func=handler, usage=parser.error)
    return parser


def whole_number(text: str, low: int, high: int) -> int:
    """An argparse value: a whole number from ``low`` to ``high``."""
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from {low:,} to {high:,}")
    return int(text)


def positive(kind: type):
    """An argparse type: a number of `kind` above zero."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0: {text}")
        return value

    return parse


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, as every command error is
    (`error: <message>`), naming the help to read; exit status 2. `--help` is argparse's."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
