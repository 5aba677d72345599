"""``compact-pushes``: merge the small files offline pushes wrote."""

from __future__ import annotations

from pathlib import Path

import click

from featurestore.cli.base import REPO_OPTION, friendly_errors, main, open_store


@main.command("compact-pushes")
@REPO_OPTION
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="Only these push sources (repeated; default: every applied push source).",
)
@click.option(
    "--target-mb",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Size the merged files aim at, in MiB.",
)
@friendly_errors
def compact_pushes(repo: Path, sources: tuple[str, ...], target_mb: int) -> None:
    """Merge the many small Parquet files offline pushes wrote into few.

    Every training set and materialization gives the same answers before, during and after
    (the file order, and so every tie-break, is kept); pushes wait while a run of files is
    merged. A read that listed the files before a merge may fail on a deleted file: run it
    again.
    """
    store = open_store(repo)
    reports = store.compact_pushes(list(sources) or None, target_mb * 2**20)
    if not reports:
        click.echo("No push source writes files offline: nothing to compact.")
    for report in reports:
        click.echo(
            f"{report.folder}: {report.files_before:,} files -> {report.files_after:,} "
            f"({report.rows:,} rows merged)"
        )
