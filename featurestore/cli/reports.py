"""``consistency-report``, ``skew-report``, ``performance-report``: HTML and JSON reports."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from featurestore.cli.base import (
    REPO_OPTION,
    TimeParam,
    console,
    friendly_errors,
    main,
    open_store,
)

# --- reports: consistency, skew, model performance -----------------------------------------

SINCE_OPTION = click.option(
    "--since", type=TimeParam(), default=None, help="Logged rows served at or after (UTC)."
)
UNTIL_OPTION = click.option(
    "--until", type=TimeParam(), default=None, help="Logged rows served before (exclusive)."
)
OUT_OPTION = click.option(
    "--out",
    "outs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report: .json (for machines) or .html (one self-contained page with "
    "plots); repeatable.",
)
REPORT_EXIT = (
    "Exit status: 0 no threshold crossed, 3 an alert threshold crossed, 4 only warning "
    "thresholds crossed, 1 an error (one line on stderr)."
)


def _run_report(build: Callable[[Callable[[str], None]], Any], outs: tuple[Path, ...]) -> None:
    """Check the outputs, build the report behind a progress line, print it, write it, and
    exit with the status its level gives (thresholds.exit_status)."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from featurestore.reports import exit_status, write
    from featurestore.reports.output import check_out
    from featurestore.reports.terminal import show

    for out in outs:
        check_out(out)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)
        report = build(lambda text: bar.update(task, description=text))
    show(report, console())
    for out in outs:
        click.echo(f"Wrote {write(report, out)}")
    sys.exit(exit_status(report.level))


@main.command("consistency-report", epilog=REPORT_EXIT)
@REPO_OPTION
@SINCE_OPTION
@UNTIL_OPTION
@click.option(
    "--model",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The served model's artifact: its rows replay with the as_of it was trained with "
    "(default for /predict rows: featurestore train's, 'created').",
)
@click.option(
    "--as-of",
    type=click.Choice(["event", "created"]),
    default=None,
    help="Replay every row with this as_of instead (default: per row, see --model; "
    "/get-online-features rows: 'event').",
)
@click.option("--examples", default=3, show_default=True, type=click.IntRange(min=0))
@OUT_OPTION
@friendly_errors
def consistency_report(
    repo: Path,
    since: Any,
    until: Any,
    model: Path | None,
    as_of: str | None,
    examples: int,
    outs: tuple[Path, ...],
) -> None:
    """Replay the logged requests through the offline join and compare, value by value, what
    was served with what training would have seen then; every mismatch gets a class."""
    from featurestore.reports import Window, consistency_report

    store = open_store(repo)
    window = Window(since, until)
    _run_report(
        lambda say: consistency_report(
            store, window, model=model, as_of=as_of, examples=examples, progress=say
        ),
        outs,
    )


@main.command("skew-report", epilog=REPORT_EXIT)
@REPO_OPTION
@click.option(
    "--training-set",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The training set (Parquet, with its .manifest.json beside it) to compare with.",
)
@SINCE_OPTION
@UNTIL_OPTION
@click.option(
    "--baseline-since",
    type=TimeParam(),
    default=None,
    help="Compare with served traffic from this time instead of a training set.",
)
@click.option(
    "--baseline-until", type=TimeParam(), default=None, help="End of the baseline (exclusive)."
)
@OUT_OPTION
@friendly_errors
def skew_report(
    repo: Path,
    training_set: Path | None,
    since: Any,
    until: Any,
    baseline_since: Any,
    baseline_until: Any,
    outs: tuple[Path, ...],
) -> None:
    """Compare the distributions of the training set (or a baseline window of served
    traffic) with the feature vectors served: PSI, KS, Jensen-Shannon, nulls, categories."""
    from featurestore.config import load_config
    from featurestore.reports import Window, skew_report

    baseline = None
    if baseline_since is not None or baseline_until is not None:
        baseline = Window(baseline_since, baseline_until)
    if (training_set is None) == (baseline is None):
        raise click.UsageError(
            "pass --training-set PATH, or --baseline-since/--baseline-until (not both)"
        )
    config = load_config(repo)
    window = Window(since, until)
    _run_report(
        lambda say: skew_report(config, training_set, window, baseline=baseline, progress=say),
        outs,
    )


@main.command("performance-report", epilog=REPORT_EXIT)
@REPO_OPTION
@click.option(
    "--labels",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ground truth (.parquet or .csv): the label and request_id, or the join keys and "
    "event_timestamp.",
)
@click.option(
    "--model",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The served model's artifact (its predictions only; its validation figures).",
)
@click.option("--label", default=None, help="The label column (default: the model's label).")
@SINCE_OPTION
@UNTIL_OPTION
@click.option(
    "--match-within",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between a label's event_timestamp and the request time, when matching by "
    "keys and time.",
)
@OUT_OPTION
@friendly_errors
def performance_report(
    repo: Path,
    labels: Path,
    model: Path | None,
    label: str | None,
    since: Any,
    until: Any,
    match_within: float,
    outs: tuple[Path, ...],
) -> None:
    """Join ground truth to the logged predictions and report AUC, log loss and calibration
    by day, against the validation figures in the model's metadata."""
    from datetime import timedelta

    from featurestore.config import load_config
    from featurestore.reports import Window, performance_report

    config = load_config(repo)
    window = Window(since, until)
    _run_report(
        lambda say: performance_report(
            config,
            labels,
            model=model,
            label=label,
            window=window,
            match_within=timedelta(seconds=match_within),
        ),
        outs,
    )
