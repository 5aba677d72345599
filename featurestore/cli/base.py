"""What every command shares: the ``featurestore`` group, ``--repo``, ``--views``, times
on the command line, domain errors as one line (exit 1), and the lazily built store and
console (heavy libraries are imported inside commands so ``featurestore --help`` stays
instant)."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from featurestore.errors import FeatureStoreError
from featurestore.types import as_utc

if TYPE_CHECKING:
    from rich.console import Console

    from featurestore.store import FeatureStore

REPO_OPTION = click.option(
    "--repo",
    "repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default="the current folder",
    help="The feature repo folder (holds featurestore.yaml).",
)


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Show domain errors as one line on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FeatureStoreError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)

    return wrapper


def open_store(repo: Path) -> FeatureStore:
    from featurestore.store import FeatureStore

    return FeatureStore(repo)


def console() -> Console:
    from rich.console import Console

    return Console()


_LISTED = (
    "'featurestore list' lists every applied definition; 'featurestore describe NAME' shows one"
)
FEAST_COMMANDS = {
    "entities": _LISTED,
    "feature-views": _LISTED,
    "on-demand-feature-views": _LISTED,
    "feature-services": _LISTED,
    "data-sources": _LISTED,
    "registry-dump": _LISTED + " (the registry itself is the JSON file 'registry:' names)",
    "version": "'featurestore --version' prints the version",
    "teardown": "there is nothing to tear down: remove a view from the repo's files and run "
    "'featurestore apply' (it drops the view's online data)",
}
"""Feast's commands featurestore has no command of that name for, and what to run instead."""


class _Commands(click.Group):
    """The ``featurestore`` group: a Feast command name is answered with what to run here."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and self.get_command(ctx, args[0]) is None and args[0] in FEAST_COMMANDS:
            raise click.UsageError(
                f"'{args[0]}' is a Feast command, not a featurestore one: "
                f"{FEAST_COMMANDS[args[0]]}",
                ctx,
            )
        return super().resolve_command(ctx, args)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, step by step.")
@click.option(
    "-c",
    "--chdir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Switch to this folder first (as Feast's -c): the default --repo of every command.",
)
@click.version_option(package_name="featurestore")
def main(verbose: bool, chdir: Path | None) -> None:
    """Feature store with train/serve parity: define features in Python, build
    point-in-time-correct training sets, materialize them online and serve them.

    Start with 'featurestore init DIR', then 'featurestore apply --repo DIR'.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if chdir is not None:
        os.chdir(chdir)


class TimeParam(click.ParamType):
    """An ISO-8601 time (naive means UTC) or ``now``."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from datetime import UTC, datetime

        if isinstance(value, datetime):
            return value
        if value.strip().lower() == "now":
            return datetime.now(UTC)
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO-8601 time (2025-01-31, 2025-01-31T12:00:00Z, ...) "
                "or 'now'",
                param,
                ctx,
            )
        return as_utc(moment)


VIEWS_OPTION = click.option(
    "--views",
    "-v",
    multiple=True,
    help="Only these feature views (comma-separated or repeated; default: every online view).",
)
