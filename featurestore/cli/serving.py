"""``serve`` (the prediction service) and ``log show`` (the feature log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from featurestore.cli.base import (
    REPO_OPTION,
    TimeParam,
    friendly_errors,
    main,
)

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
    from featurestore.models.online import load_online_model
    from featurestore.online.base import open_online_store
    from featurestore.registry import Registry
    from serving.run import run
    from serving.settings import load_settings

    settings = load_settings(repo, model)
    config = settings.config
    registry = Registry(config.registry_path, config.project)
    with open_online_store(config, check=False) as store:  # not connected: not read
        m = load_online_model(settings.model, config, store, registry).artifact.metadata
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
