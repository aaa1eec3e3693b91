"""What every command group shares: its settings, the database, argument types, errors."""

import argparse
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featuregen_assets.settings import Settings

# What the CLI changes from the settings' defaults; a FEATUREGEN_* variable set still wins.
CLI_DEFAULTS = {"FEATUREGEN_PROGRESS": "bar"}
DEMO_DEFAULTS = {**CLI_DEFAULTS, "FEATUREGEN_MODELS": "tiny"}
VERBOSE_HELP = "Print Dagster's whole run log (default: the steps' own lines, a failure summary)."


class BadSetting(ValueError):
    """A variable the settings refuse: one line and exit status 2 (`main`)."""


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


def unknown_category(conn, category: str) -> str | None:
    """The error line for a category with no stored image (listing those that have), or None."""
    from featuregen_assets.core.search.hits import known_categories

    known = known_categories(conn)
    if category in known:
        return None
    return f"error: unknown category {category!r}; known: {', '.join(known) or 'none'}"


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
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
