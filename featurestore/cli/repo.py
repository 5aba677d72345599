"""Repo commands: ``init``, ``plan``, ``apply``, ``list``, ``describe``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from featurestore.cli.base import (
    REPO_OPTION,
    console,
    friendly_errors,
    main,
    open_store,
)
from featurestore.definitions import format_ttl

if TYPE_CHECKING:
    from featurestore.registry_plan import Plan


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--project", default=None, help="Project name (default: the folder's name).")
@friendly_errors
def init(directory: Path, project: str | None) -> None:
    """Scaffold a working feature repo in DIRECTORY, with example data."""
    from featurestore.scaffold import scaffold

    created = scaffold(directory, project)
    click.echo(f"Created feature repo {directory} ({len(created)} files):")
    for path in created:
        click.echo(f"  {path}")
    click.echo(f"Next: featurestore apply --repo {directory}")


def _print_plan(result: Plan, applied: bool) -> None:
    if result.replaces_unreadable is not None:
        click.secho(
            f"Replaced the unreadable registry ({result.replaces_unreadable}) with the repo's "
            "definitions.",
            fg="yellow",
        )
    if result.is_empty:
        click.echo("No changes: the registry matches the repo.")
        return
    colors = {"added": "green", "changed": "yellow", "removed": "red"}
    signs = {"added": "+", "changed": "~", "removed": "-"}
    for c in result.changes:
        line = f"{signs[c.action]} {c.kind} {c.name} ({c.action})"
        click.secho(line, fg=colors[c.action])
        for detail in c.details:
            click.echo(f"    {detail}")
    reset = result.views_to_reset()
    if reset:
        verb = "were" if applied else "will be"
        click.echo(
            f"Online data and watermarks of {', '.join(reset)} {verb} dropped: "
            "materialize them again."
        )


@main.command()
@REPO_OPTION
@friendly_errors
def plan(repo: Path) -> None:
    """Show what 'apply' would add, change or remove (and which attributes changed)."""
    _print_plan(open_store(repo).plan(), applied=False)


@main.command()
@REPO_OPTION
@friendly_errors
def apply(repo: Path) -> None:
    """Register the repo's definitions (after checking them against the sources' schemas)."""
    store = open_store(repo)
    result = store.apply()
    _print_plan(result, applied=True)
    state = store.state
    click.echo(
        f"Registered {len(state.entities)} entities, {len(state.views)} feature views, "
        + (f"{len(state.on_demand)} on-demand feature views, " if state.on_demand else "")
        + f"{len(state.services)} feature services in {store.registry.path}"
    )


@main.command("list")
@REPO_OPTION
@friendly_errors
def list_(repo: Path) -> None:
    """List applied entities, feature views and feature services with fingerprints."""
    from rich import box
    from rich.table import Table

    from featurestore.fingerprint import entity_fingerprint

    state = open_store(repo).state
    # No vertical rules: the table fits 80 columns (pipes, CI logs) without wrapping.
    table = Table(
        title=f"project {state.project}", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    for column in ("kind", "name", "details", "version", "fingerprint"):
        # Names and fingerprints are never cut (people grep them); details wrap instead.
        table.add_column(column, no_wrap=column != "details")
    for name, entity in sorted(state.entities.items()):
        table.add_row(
            "entity",
            name,
            "keys: " + ", ".join(entity.join_keys),
            "",
            entity_fingerprint(entity)[:12],
        )
    for name, record in sorted(state.views.items()):
        details = f"{len(record.view.features)} features, ttl {format_ttl(record.view.ttl)}"
        if record.view.push_source is not None:
            details += f", push source {record.view.push_source.name}"
        table.add_row("feature view", name, details, str(record.version), record.fingerprint[:12])
    for name, orecord in sorted(state.on_demand.items()):
        inputs = len(orecord.view.source_projections) + len(orecord.view.request_sources)
        details = f"{len(orecord.view.features)} features, {inputs} sources"
        table.add_row(
            "on-demand view", name, details, str(orecord.version), orecord.fingerprint[:12]
        )
    for name, srecord in sorted(state.services.items()):
        details = f"{len(srecord.service.refs)} features, {len(srecord.service.projections)} views"
        table.add_row(
            "feature service", name, details, str(len(srecord.versions)), srecord.fingerprint[:12]
        )
    console().print(table)


@main.command()
@click.argument("name")
@REPO_OPTION
@friendly_errors
def describe(name: str, repo: Path) -> None:
    """Show one applied entity, feature view or feature service in full."""
    import json

    from featurestore.definition_dicts import entity_to_dict
    from featurestore.fingerprint import entity_fingerprint

    state = open_store(repo).state
    data: dict[str, Any]
    if name in state.views:
        data = state.to_json()["feature_views"][name]
        kind = "feature view"
    elif name in state.on_demand:
        data = state.to_json()["on_demand_feature_views"][name]
        kind = "on-demand feature view"
    elif name in state.services:
        data = state.to_json()["feature_services"][name]
        kind = "feature service"
    elif name in state.entities:
        entity = state.entities[name]
        data = {"definition": entity_to_dict(entity), "fingerprint": entity_fingerprint(entity)}
        kind = "entity"
    else:
        from featurestore.definitions import suggest
        from featurestore.errors import UnknownFeatureError

        names = [*state.views, *state.on_demand, *state.services, *state.entities]
        raise UnknownFeatureError(f"nothing named {name!r} was applied{suggest(name, names)}")
    click.secho(f"{kind} {name}", bold=True)
    click.echo(json.dumps(data, indent=2, sort_keys=True))
