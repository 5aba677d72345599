"""Model commands: ``train``, ``predict-batch``, ``models describe`` and ``training-set``
(with its BigQuery ``--dry-run``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from featurestore.cli.base import (
    REPO_OPTION,
    console,
    friendly_errors,
    main,
    open_store,
)

if TYPE_CHECKING:
    from featurestore.offline.plan import AsOf
    from featurestore.store import FeatureStore


# --- models: train, batch prediction, describe ------------------------------------------


@main.command()
@REPO_OPTION
@click.option("--service", required=True, help="The feature service the model reads.")
@click.option(
    "--entities",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Labeled entity rows (.parquet, .csv or a folder of .parquet): join keys, "
    "event_timestamp, the label.",
)
@click.option("--label", required=True, help="The binary label column (0/1 or true/false).")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Artifact folder.",
)
@click.option(
    "--warm-start",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Continue from this artifact (refused unless its feature fingerprint still matches).",
)
@click.option("--num-boost-round", default=200, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--valid-fraction",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Share of the latest entity rows held out for validation (time-based split).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="LightGBM threads (default: all cores; on a busy machine 1 is often fastest).",
)
@friendly_errors
def train(
    repo: Path,
    service: str,
    entities: Path,
    label: str,
    out: Path,
    warm_start: Path | None,
    num_boost_round: int,
    valid_fraction: float,
    threads: int | None,
) -> None:
    """Train a LightGBM model on a feature service's point-in-time training set."""
    from featurestore import models

    artifact = models.train(
        repo,
        service=service,
        entities=entities,
        label=label,
        out=out,
        warm_start=warm_start,
        num_boost_round=num_boost_round,
        valid_fraction=valid_fraction,
        threads=threads,
    )
    m = artifact.metadata
    click.echo(
        f"Split at {m.split['time']}: trained on {m.split['train_rows']} rows before it, "
        f"validated on {m.split['valid_rows']} rows at or after it."
    )
    click.echo(
        f"Validation AUC {m.metrics['valid_auc']:.4f}, log loss {m.metrics['valid_log_loss']:.4f} "
        f"(base-rate predictor {m.metrics['valid_log_loss_of_base_rate']:.4f}), "
        f"base rate {m.metrics['valid_base_rate']:.4f}."
    )
    parent = f", warm-started from {m.parent['path']}" if m.parent else ""
    click.echo(
        f"Wrote {out} ({m.num_trees} trees{parent}), bound to {service} "
        f"fingerprint {m.service_fingerprint[:12]}."
    )


@main.command("predict-batch")
@REPO_OPTION
@click.option(
    "--model", required=True, type=click.Path(file_okay=False, path_type=Path), help="Artifact."
)
@click.option(
    "--entities",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Entity rows to score (.parquet, .csv or a folder of .parquet): join keys and "
    "event_timestamp.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@friendly_errors
def predict_batch(repo: Path, model: Path, entities: Path, out: Path) -> None:
    """Score entity rows with a model, features from the offline point-in-time join."""
    from featurestore import models

    scored = models.predict_batch(model, repo, entities, out)
    click.echo(f"Scored {len(scored)} rows into {out} (column 'prediction').")


@main.group()
def models() -> None:
    """Inspect model artifacts."""


@models.command("describe")
@click.argument("model", type=click.Path(file_okay=False, path_type=Path))
@REPO_OPTION
@click.option(
    "--check",
    is_flag=True,
    help="Exit with status 3 when the registry no longer matches the model (for CI gates).",
)
@friendly_errors
def models_describe(model: Path, repo: Path, check: bool) -> None:
    """What MODEL was trained on, and whether the registry still matches its fingerprint."""
    from featurestore import models as models_api

    description = models_api.describe(model, repo)
    for line in description.trained_lines():
        click.echo(line)
    color = "green" if description.binding.matches else "red"
    for line in description.binding_lines():
        click.secho(line, fg=color)
    if check and not description.binding.matches:
        sys.exit(3)


def _print_dry_run(
    store: FeatureStore,
    entities: Path,
    features: str | list[str],
    full_feature_names: bool,
    as_of: AsOf,
) -> None:
    """Print the SQL a BigQuery training set would run and the bytes it would scan; without
    credentials, the SQL, then one error line saying how to provide them (exit 1)."""
    from featurestore.errors import ConfigError
    from featurestore.offline.bigquery import BigQueryEngine
    from featurestore.training import plan_join

    engine = store.offline_engine()
    if not isinstance(engine, BigQueryEngine):
        raise ConfigError(
            "--dry-run estimates what BigQuery would scan: it needs offline_store: {type: "
            "bigquery, ...} in featurestore.yaml (DuckDB runs locally, at no cost)"
        )
    projections, _ = store.state.resolve(features)
    plan, rows = plan_join(
        engine,
        store.state,
        entities,
        projections,
        full_feature_names=full_feature_names,
        as_of=as_of,
        with_timestamps=False,
        repo_path=store.repo_path,
    )
    result = engine.dry_run(plan, rows)
    click.echo(result.sql)
    if result.total_bytes_processed is not None:
        gib = result.total_bytes_processed / 2**30
        click.echo(
            f"-- BigQuery dry run: {result.total_bytes_processed:,} bytes ({gib:.3f} GiB) "
            "would be scanned"
        )
    for note in result.notes:
        click.echo(f"-- {note}")
    if result.unavailable is not None:
        click.secho(f"error: {result.unavailable}", fg="red", err=True)
        sys.exit(1)


@main.command("training-set")
@REPO_OPTION
@click.option("--service", default=None, help="The feature service to build the set for.")
@click.option(
    "--features",
    "features",
    multiple=True,
    metavar="VIEW:FEATURE",
    help="A feature reference, repeatable (instead of --service).",
)
@click.option(
    "--entities",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Entity rows (.parquet, .csv or a folder of .parquet): join keys and event_timestamp "
    "(other columns pass through).",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the training set (Parquet); the manifest goes to OUT.manifest.json.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="BigQuery: print the SQL and the bytes it would scan (a dry-run job); run nothing.",
)
@click.option("--full-feature-names", is_flag=True, help="Name feature columns view__feature.")
@click.option(
    "--as-of",
    type=click.Choice(["event", "created"]),
    default="event",
    show_default=True,
    help="'created': use only rows created by each entity time (what serving could have seen).",
)
@click.option("--label", default=None, help="A column whose balance the summary shows.")
@friendly_errors
def training_set(
    repo: Path,
    service: str | None,
    features: tuple[str, ...],
    entities: Path,
    out: Path,
    full_feature_names: bool,
    as_of: str,
    label: str | None,
    dry_run: bool,
) -> None:
    """Build a point-in-time-correct training set and its manifest."""
    import time

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from featurestore.outputs import check_writable
    from featurestore.training import check_label, summarize

    if bool(service) == bool(features):
        raise click.UsageError("pass --service NAME or one or more --features VIEW:FEATURE")
    when = cast("AsOf", as_of)  # click.Choice allows only "event" and "created"
    store = open_store(repo)
    if dry_run:
        _print_dry_run(store, entities, service or list(features), full_feature_names, when)
        return
    if out is None:
        raise click.UsageError("pass --out PATH (or --dry-run)")
    # Everything that can be wrong is checked before the join runs and anything is written.
    check_writable(out, "training set")
    started = time.perf_counter()
    job = store.get_historical_features(
        entities,
        list(features) or None,
        feature_service=service,
        full_feature_names=full_feature_names,
        as_of=when,
    )
    job.check_output(out)
    if label is not None:
        check_label(job, label)
    n_rows = job.entity_rows or 0
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=n_rows < 100_000,  # small inputs finish before a spinner would help
    ) as progress:
        views = ", ".join(v.name for v in job.plan.views)
        step = progress.add_task(f"joining {n_rows:,} entity rows with {views}", total=None)
        job.to_arrow()
        progress.update(step, description=f"writing {out}")
        job.to_parquet(out)
    summary = summarize(job, label)
    elapsed = time.perf_counter() - started
    click.echo(
        f"Wrote {out}: {summary.rows:,} rows x {summary.columns} columns in {elapsed:.1f} s "
        f"(manifest: {out}.manifest.json)"
    )
    if summary.label_counts is not None:
        total = max(summary.rows, 1)
        balance = ", ".join(
            f"{value} {count:,} ({count / total:.1%})"
            for value, count in summary.label_counts.items()
        )
        click.echo(f"Label {label}: {balance}")
    table = Table("feature", "dtype", "null rate")
    dtypes = {f.output: f.dtype.name for f in job.plan.feature_columns}
    for name, rate in summary.null_rates.items():
        table.add_row(name, dtypes[name], f"{rate:.1%}")
    console().print(table)
