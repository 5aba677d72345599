"""``materialize`` and ``materialize-incremental``, with a progress line per view."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from featurestore.cli.base import (
    REPO_OPTION,
    VIEWS_OPTION,
    TimeParam,
    console,
    friendly_errors,
    main,
    open_store,
)
from featurestore.materialize import Progress as MaterializeHooks


class _ProgressBar(MaterializeHooks):
    """A rich progress line per view (rows, rows/s, elapsed) fed by materialization's hooks."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.task: Any = None

    def view_started(self, view: str, window: Any) -> None:
        if self.task is None:  # shown from the first view on: an early error stays one line
            self.bar.start()
        self.rows = 0
        self.task = self.bar.add_task(view, total=None, rows=0, rate=0.0)

    def batch_written(self, view: str, rows_read: int, rows_written: int) -> None:
        self.rows += rows_read
        elapsed = self.bar.tasks[self.task].elapsed or 0.0
        self.bar.update(self.task, rows=self.rows, rate=self.rows / max(elapsed, 1e-6))

    def view_finished(self, run: Any) -> None:
        rate = run.rows_per_second
        self.bar.update(self.task, total=1, completed=1, rows=run.rows_read, rate=rate)


def _materialize(run: Callable[..., Any], views: tuple[str, ...]) -> None:
    """Run a materialization behind a progress bar, then print a summary table."""
    from rich import box
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    names = [n.strip() for v in views for n in v.split(",") if n.strip()] or None
    out = console()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TextColumn("{task.fields[rate]:>12,.0f} rows/s"),
        TimeElapsedColumn(),
        console=out,
    )
    hooks = _ProgressBar(bar)
    try:
        report = run(views=names, progress=hooks)
    finally:
        if hooks.task is not None:
            bar.stop()
    table = Table(
        title="materialized (one row per entity key)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("feature view", no_wrap=True)
    for column in ("read", "written", "rows/s"):
        table.add_column(column, justify="right")
    table.add_column("watermark end", no_wrap=True)
    table.add_column("max created", no_wrap=True)
    for r in report.runs:
        created = r.watermark.max_created
        table.add_row(
            r.view,
            f"{r.rows_read:,}",
            f"{r.rows_written:,}",
            f"{r.rows_per_second:,.0f}",
            f"{r.watermark.end:%Y-%m-%d %H:%M}",
            f"{created:%Y-%m-%d %H:%M}" if created else "-",
        )
    for name in report.skipped:
        table.add_row(name, "-", "-", "-", "skipped: online=False", "-")
    out.print(table)


@main.command()
@click.argument("start", type=TimeParam())
@click.argument("end", type=TimeParam())
@REPO_OPTION
@VIEWS_OPTION
@friendly_errors
def materialize(start: Any, end: Any, repo: Path, views: tuple[str, ...]) -> None:
    """Write online the latest row per entity with START <= event time <= END.

    Times are ISO-8601 (naive means UTC) or 'now'; both ends are inclusive. Each view's
    watermark moves to END once its rows are written.
    """
    store = open_store(repo)
    _materialize(functools.partial(store.materialize, start, end), views)


@main.command("materialize-incremental")
@click.argument("end", type=TimeParam())
@REPO_OPTION
@VIEWS_OPTION
@friendly_errors
def materialize_incremental(end: Any, repo: Path, views: tuple[str, ...]) -> None:
    """Write what arrived since each view's last run, up to END (ISO-8601 or 'now').

    Rows newer than the last run's end, and late rows (created after the greatest created
    time written); a view never materialized gets everything up to END.
    """
    store = open_store(repo)
    _materialize(functools.partial(store.materialize_incremental, end), views)
