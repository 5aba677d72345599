"""The ``featurestore`` command: thin commands over the library.

Heavy libraries are imported inside commands so ``featurestore --help`` stays instant.
Domain errors print as one clear line and exit with status 1, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from featurestore.definitions import format_ttl
from featurestore.errors import FeatureStoreError
from featurestore.materialize import Progress as MaterializeHooks
from featurestore.types import as_utc

if TYPE_CHECKING:
    from rich.console import Console

    from featurestore.offline.plan import AsOf
    from featurestore.registry import Plan
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


def _store(repo: Path) -> FeatureStore:
    from featurestore.store import FeatureStore

    return FeatureStore(repo)


def _console() -> Console:
    from rich.console import Console

    return Console()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, step by step.")
@click.version_option(package_name="featurestore")
def main(verbose: bool) -> None:
    """Feature store with train/serve parity: define features in Python, build
    point-in-time-correct training sets, materialize them online and serve them.

    Start with 'featurestore init DIR', then 'featurestore apply --repo DIR'.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
    _print_plan(_store(repo).plan(), applied=False)


@main.command()
@REPO_OPTION
@friendly_errors
def apply(repo: Path) -> None:
    """Register the repo's definitions (after checking them against the sources' schemas)."""
    store = _store(repo)
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

    state = _store(repo).state
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
    _console().print(table)


@main.command()
@click.argument("name")
@REPO_OPTION
@friendly_errors
def describe(name: str, repo: Path) -> None:
    """Show one applied entity, feature view or feature service in full."""
    import json

    from featurestore.definitions import entity_to_dict
    from featurestore.fingerprint import entity_fingerprint

    state = _store(repo).state
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

        names = [*state.views, *state.on_demand, *state.services, *state.entities]
        raise click.ClickException(f"nothing named {name!r} was applied{suggest(name, names)}")
    click.secho(f"{kind} {name}", bold=True)
    click.echo(json.dumps(data, indent=2, sort_keys=True))


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
    store = _store(repo)
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
    _console().print(table)


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
    multiple=True,
    help="Only these feature views (comma-separated or repeated; default: every online view).",
)


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
    console = _console()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TextColumn("{task.fields[rate]:>12,.0f} rows/s"),
        TimeElapsedColumn(),
        console=console,
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
    console.print(table)


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
    store = _store(repo)
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
    store = _store(repo)
    _materialize(functools.partial(store.materialize_incremental, end), views)


# --- serving and the feature log --------------------------------------------------------


def _store_location(config: Any) -> str:
    from featurestore.config import RedisConfig
    from featurestore.online.redis import mask_url

    online = config.online_store
    if isinstance(online, RedisConfig):
        return mask_url(online.url)
    return f"SQLite {online.path}"


@main.command()
@REPO_OPTION
@click.option(
    "--model",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The model artifact folder to serve.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="FEATURESTORE_SERVE_HOST",
    help="Address to bind (0.0.0.0 to accept connections from other hosts).",
)
@click.option("--port", default=6566, show_default=True, envvar="FEATURESTORE_SERVE_PORT")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--access-log", is_flag=True, help="Log every request (costs throughput).")
@friendly_errors
def serve(repo: Path, model: Path, host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve online features and the model's predictions over HTTP (FastAPI, uvicorn).

    Refuses a model whose feature service no longer matches the registry. SIGHUP reloads
    the model and registry (the old model stays if the new one is refused); SIGTERM stops
    after finishing requests in flight and writing the feature log.
    """
    from featurestore import models
    from featurestore.registry import Registry
    from serving.run import run
    from serving.settings import load_settings

    settings = load_settings(repo, model)
    artifact = models.load(settings.model)
    registry = Registry(settings.config.registry_path, settings.config.project)
    artifact.binding(registry.require()).require()
    m = artifact.metadata
    click.echo(
        f"Serving model {settings.model.name} (fingerprint {m.service_fingerprint[:12]}, "
        f"sha256 {m.model_sha256[:12]}, feature service {m.feature_service}) from "
        f"{_store_location(settings.config)} at http://{host}:{port} with {workers} "
        f"worker{'s' if workers > 1 else ''}; feature log {settings.feature_log.path}",
        err=True,
    )
    run(repo, model, host=host, port=port, workers=workers, access_log=access_log)


@main.group("log")
def log_group() -> None:
    """Inspect the feature log the prediction service writes."""


@log_group.command("show")
@REPO_OPTION
@click.option("--since", type=TimeParam(), default=None, help="Only rows served at or after.")
@friendly_errors
def log_show(repo: Path, since: Any) -> None:
    """Summarize the feature log: files, rows, time range, rows per endpoint and model."""
    from featurestore.config import load_config
    from featurestore.feature_log import summarize

    path = load_config(repo).feature_log_path
    summary = summarize(path, since)
    if summary.rows == 0 or summary.first is None or summary.last is None:
        click.echo(
            f"No logged rows in {path} ({summary.files} files)"
            + (f" since {since}" if since else "")
        )
        return
    click.echo(
        f"{path}: {summary.rows:,} rows from {summary.requests:,} requests in {summary.files} "
        f"files, {summary.first.isoformat()} .. {summary.last.isoformat()}"
    )
    for endpoint, model, rows in summary.by_model:
        click.echo(f"  {endpoint:<22} model {model:<20} {rows:>10,} rows")


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
    show(report, _console())
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

    store = _store(repo)
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


if __name__ == "__main__":
    main()
