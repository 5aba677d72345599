"""``featurestore.yaml`` -> typed settings, passed explicitly to whatever needs them.

::

    project: fraud
    registry: data/registry.json
    offline_store: {type: duckdb}          # or {type: bigquery, project: ..., dataset: ...}
    online_store: {type: redis, url: redis://127.0.0.1:6379/0}  # or {type: sqlite, path: ...}
    feature_log: {path: data/feature_log}

Relative paths resolve against the repo folder. ``FEATURESTORE_REDIS_URL`` overrides the
Redis URL. Without an ``online_store`` section the embedded SQLite store is used.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurestore.errors import ConfigError

CONFIG_FILE = "featurestore.yaml"
REDIS_URL_ENV = "FEATURESTORE_REDIS_URL"
_BQ_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BQ_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_BQ_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_BQ_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class DuckDBConfig:
    """The embedded offline engine; ``memory_limit``/``threads`` pass through to DuckDB."""

    memory_limit: str | None = None
    threads: int | None = None


@dataclass(frozen=True)
class BigQueryConfig:
    """BigQuery as the offline engine: where temporary entity tables and results go.

    ``maximum_bytes_billed`` caps every query (BigQuery fails it, unbilled, past the cap);
    ``labels`` are added to every job; temporary tables expire after
    ``temp_table_expiration_minutes``. ``api_endpoint`` points the client at a
    BigQuery-compatible endpoint (an emulator) with anonymous credentials.
    """

    project: str
    dataset: str
    location: str | None = None
    maximum_bytes_billed: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    temp_table_expiration_minutes: int = 60
    api_endpoint: str | None = None

    def __post_init__(self) -> None:
        # These names reach SQL and job configurations: reject anything BigQuery would not.
        if not isinstance(self.project, str) or not _BQ_PROJECT.match(self.project):
            raise ConfigError(
                f"offline_store (bigquery): project {self.project!r} is not a project id"
            )
        if not isinstance(self.dataset, str) or not _BQ_DATASET.match(self.dataset):
            raise ConfigError(
                f"offline_store (bigquery): dataset {self.dataset!r} must be letters, digits, underscores"
            )
        for key, value in dict(self.labels).items():
            if not (_BQ_LABEL.match(str(key)) and _BQ_LABEL_VALUE.match(str(value))):
                raise ConfigError(
                    f"offline_store (bigquery): label {key!r}: {value!r} must be lowercase "
                    "letters, digits, '_' or '-' (keys start with a letter)"
                )
        if self.api_endpoint is not None and not re.match(r"^https?://", str(self.api_endpoint)):
            raise ConfigError(
                f"offline_store (bigquery): api_endpoint {self.api_endpoint!r} must be an http(s) URL"
            )
        positive = self.temp_table_expiration_minutes
        if not isinstance(positive, int) or positive <= 0:
            raise ConfigError(
                "offline_store (bigquery): temp_table_expiration_minutes must be a positive integer"
            )


@dataclass(frozen=True)
class RedisConfig:
    url: str
    socket_timeout: float = 5.0


@dataclass(frozen=True)
class SqliteConfig:
    path: Path


OfflineConfig = DuckDBConfig | BigQueryConfig
OnlineConfig = RedisConfig | SqliteConfig


@dataclass(frozen=True)
class RepoConfig:
    """Everything ``featurestore.yaml`` says, with paths made absolute."""

    repo_path: Path
    project: str
    registry_path: Path
    offline_store: OfflineConfig
    online_store: OnlineConfig
    feature_log_path: Path


def _section(raw: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: '{key}' must be a mapping, got {value!r}")
    return dict(value)


def _offline(section: dict[str, Any], path: Path) -> OfflineConfig:
    kind = section.pop("type", "duckdb")
    try:
        if kind == "duckdb":
            return DuckDBConfig(**section)
        if kind == "bigquery":
            return BigQueryConfig(**section)
    except TypeError as exc:
        raise ConfigError(f"{path}: offline_store ({kind}): {exc}") from None
    raise ConfigError(f"{path}: offline_store.type {kind!r} is not 'duckdb' or 'bigquery'")


def _online(section: dict[str, Any], repo: Path, path: Path) -> OnlineConfig:
    kind = section.pop("type", "sqlite")
    if kind == "redis":
        url = os.environ.get(REDIS_URL_ENV) or section.get("url")
        section.pop("url", None)
        if not url:
            raise ConfigError(f"{path}: online_store (redis) needs a url, or set {REDIS_URL_ENV}")
        try:
            return RedisConfig(url=url, **section)
        except TypeError as exc:
            raise ConfigError(f"{path}: online_store (redis): {exc}") from None
    if kind == "sqlite":
        return SqliteConfig(path=repo / section.pop("path", "data/online.db"))
    raise ConfigError(f"{path}: online_store.type {kind!r} is not 'redis' or 'sqlite'")


def load_config(repo_path: str | os.PathLike[str]) -> RepoConfig:
    """Read ``featurestore.yaml`` from ``repo_path``; ConfigError says what is wrong."""
    import yaml

    repo = Path(repo_path).resolve()
    path = repo / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            f"no {CONFIG_FILE} in {repo}: pass --repo DIR, or create one with "
            "'featurestore init DIR'"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of settings")
    project = raw.get("project")
    if not isinstance(project, str) or not project.isidentifier():
        raise ConfigError(f"{path}: 'project' must be a name like 'fraud', got {project!r}")
    return RepoConfig(
        repo_path=repo,
        project=project,
        registry_path=repo / raw.get("registry", "data/registry.json"),
        offline_store=_offline(_section(raw, "offline_store", path), path),
        online_store=_online(_section(raw, "online_store", path), repo, path),
        feature_log_path=repo / _section(raw, "feature_log", path).get("path", "data/feature_log"),
    )
