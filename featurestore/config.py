"""``featurestore.yaml`` -> typed settings, strictly validated, passed explicitly.

::

    project: fraud
    registry: data/registry.json
    offline_store: {type: duckdb}          # or {type: bigquery, project: ..., dataset: ...}
    online_store: {type: redis, url: redis://127.0.0.1:6379/0}  # or {type: sqlite, path: ...}
    feature_log: {path: data/feature_log}
    serving: {max_entities: 10000, max_body_mb: 64, max_lag: 2h}
    reports: {thresholds: {psi_alert: 0.25}, exclude_features: ["user_stats:n_tx"]}

Every section and key is listed in the README's configuration reference (with its type and
default) and has a typed dataclass here. Every key is checked when the file is read: an
unknown key is a ``ConfigError`` naming the closest valid key, and a value of the wrong type
or out of range is a ``ConfigError`` naming the key and what it must be. ``null`` (or an
empty value) means the default. Relative paths resolve against the repo folder.
``FEATURESTORE_REDIS_URL`` overrides the Redis URL. Without an ``online_store`` section the
embedded SQLite store is used.

Durations (``serving.max_lag``) are written ``90s``, ``15m``, ``2h``, ``1d`` or combined
(``1h30m``), or as a number of seconds.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from featurestore.errors import ConfigError

CONFIG_FILE = "featurestore.yaml"
REDIS_URL_ENV = "FEATURESTORE_REDIS_URL"
_BQ_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BQ_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_BQ_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_BQ_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*([KMGT]i?B|B|%)\s*$", re.IGNORECASE)
_DURATION = re.compile(
    r"^\s*(?:(?P<d>\d+)\s*d)?\s*(?:(?P<h>\d+)\s*h)?\s*(?:(?P<m>\d+)\s*m)?\s*"
    r"(?:(?P<s>\d+(?:\.\d+)?)\s*s)?\s*$"
)
_HOST_PORT = re.compile(r"^(?P<host>[^\s:]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


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
    """Redis as the online store. ``socket_timeout`` (seconds) bounds every call, connecting
    included; ``cluster`` selects Redis Cluster, discovered from ``url`` and the optional
    ``startup_nodes`` (``"host:port"``)."""

    url: str
    socket_timeout: float = 5.0
    cluster: bool = False
    startup_nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SqliteConfig:
    """The embedded online store: one SQLite file."""

    path: Path


@dataclass(frozen=True)
class FeatureLogConfig:
    """The served-vector log: Parquet under ``path``. ``include_online_features`` logs
    ``/get-online-features`` too (``/predict`` is always logged); ``queue_size`` bounds the
    rows waiting for the background writer (more are dropped, counted, never blocking)."""

    path: Path
    include_online_features: bool = False
    queue_size: int = 10_000


@dataclass(frozen=True)
class ServingConfig:
    """The prediction service: ``max_entities`` per request (more is refused);
    ``max_body_mb``, the largest request body in MiB (a larger one is refused before it is
    read whole); ``max_lag`` bounds, for readiness, how far a view's materialization may lag
    (None: not checked)."""

    max_entities: int = 10_000
    max_body_mb: int = 64
    max_lag: timedelta | None = None


@dataclass(frozen=True)
class ReportsConfig:
    """The skew, consistency and performance reports: ``thresholds`` by name (the names and
    defaults are ``featurestore/reports/thresholds.py``'s; an unknown name is refused), and
    ``exclude_features`` (``"view:feature"``) that no report judges."""

    thresholds: dict[str, float] = field(default_factory=dict)
    exclude_features: tuple[str, ...] = ()


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
    feature_log: FeatureLogConfig
    serving: ServingConfig = field(default_factory=ServingConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)

    @property
    def feature_log_path(self) -> Path:
        """The feature log's folder (``feature_log.path``)."""
        return self.feature_log.path


_TOP_LEVEL = (
    "project",
    "registry",
    "offline_store",
    "online_store",
    "feature_log",
    "serving",
    "reports",
)
_OFFLINE_KEYS = {
    "duckdb": ("type", "threads", "memory_limit"),
    "bigquery": (
        "type",
        "project",
        "dataset",
        "location",
        "maximum_bytes_billed",
        "labels",
        "temp_table_expiration_minutes",
        "api_endpoint",
    ),
}
_ONLINE_KEYS = {
    "redis": ("type", "url", "cluster", "startup_nodes", "socket_timeout"),
    "sqlite": ("type", "path"),
}


class _Section:
    """One mapping of featurestore.yaml, read key by key; each reader checks its key's value."""

    def __init__(self, raw: Any, name: str, file: Path) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{file}: '{name}' must be a mapping, got {raw!r}")
        self.raw, self.name, self.file = raw, name, file

    def _key(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def error(self, key: str, must: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self._key(key)} must be {must}, got {self.raw[key]!r}")

    def only(self, keys: Iterable[str], others: Mapping[str, Iterable[str]] | None = None) -> None:
        """Refuse keys not in ``keys``, naming the closest valid key (or the type it belongs to)."""
        from featurestore.definitions import suggest

        valid = list(keys)
        for key in self.raw:
            if key in valid:
                continue
            owner = next((t for t, ks in (others or {}).items() if key in ks), None)
            hint = (
                f" (it is a setting of type {owner})" if owner else suggest(str(key).lower(), valid)
            )
            raise ConfigError(
                f"{self.file}: unknown key {self._key(str(key))!r}{hint}; "
                f"valid keys: {', '.join(valid)}"
            )

    def given(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def string(self, key: str, default: str | None = None) -> str | None:
        if not self.given(key):
            return default
        value = self.raw[key]
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "a non-empty string")
        return value

    def integer(self, key: str, default: int | None = None) -> int | None:
        """A positive integer."""
        if not self.given(key):
            return default
        value = self.raw[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.error(key, "a positive integer")
        return value

    def seconds(self, key: str, default: float) -> float:
        """A positive, finite number of seconds."""
        if not self.given(key):
            return default
        value = self.raw[key]
        if not _is_number(value) or not 0 < value < math.inf:
            raise self.error(key, "a positive number of seconds")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        if not self.given(key):
            return default
        if not isinstance(self.raw[key], bool):
            raise self.error(key, "true or false")
        return bool(self.raw[key])

    def path(self, key: str, default: str, repo: Path) -> Path:
        return repo / str(self.string(key, default))

    def strings(self, key: str) -> tuple[str, ...]:
        if not self.given(key):
            return ()
        value = self.raw[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "a list of strings")
        return tuple(value)

    def mapping(self, key: str) -> dict[Any, Any]:
        if not self.given(key):
            return {}
        if not isinstance(self.raw[key], dict):
            raise self.error(key, "a mapping")
        return dict(self.raw[key])

    def duration(self, key: str) -> timedelta | None:
        if not self.given(key):
            return None
        value = self.raw[key]
        seconds = value if _is_number(value) else _parse_duration(value)
        if seconds is None or not 0 < seconds < math.inf:
            raise self.error(key, "a positive duration like 90s, 15m, 2h, 1d or 1h30m")
        try:
            return timedelta(seconds=seconds)
        except OverflowError:
            raise self.error(key, "a duration shorter than 999999999 days") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_duration(value: Any) -> float | None:
    """Seconds in ``"1d 2h 30m 15s"``-style text (any subset, in that order), or None."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or not any(match.groupdict().values()):
        return None
    parts = {unit: float(n) for unit, n in match.groupdict().items() if n is not None}
    return (
        parts.get("d", 0) * 86_400
        + parts.get("h", 0) * 3_600
        + parts.get("m", 0) * 60
        + parts.get("s", 0)
    )


def _offline(section: _Section) -> OfflineConfig:
    kind = section.raw.get("type", "duckdb")
    if not isinstance(kind, str) or kind not in _OFFLINE_KEYS:
        raise ConfigError(
            f"{section.file}: offline_store.type {kind!r} is not 'duckdb' or 'bigquery'"
        )
    section.only(_OFFLINE_KEYS[kind], _OFFLINE_KEYS)
    if kind == "duckdb":
        memory = section.string("memory_limit")
        if memory is not None and not _MEMORY.match(memory):
            raise section.error("memory_limit", "a size like '4GB', '500MiB' or '80%'")
        return DuckDBConfig(memory_limit=memory, threads=section.integer("threads"))
    for required in ("project", "dataset"):
        if not section.given(required):
            raise ConfigError(f"{section.file}: offline_store (bigquery) needs {required}")
    labels = section.mapping("labels")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise section.error("labels", "a mapping of strings to strings")
    try:
        return BigQueryConfig(
            project=str(section.string("project")),
            dataset=str(section.string("dataset")),
            location=section.string("location"),
            maximum_bytes_billed=section.integer("maximum_bytes_billed"),
            labels=labels,
            temp_table_expiration_minutes=section.integer("temp_table_expiration_minutes", 60)
            or 60,
            api_endpoint=section.string("api_endpoint"),
        )
    except ConfigError as exc:
        raise ConfigError(f"{section.file}: {exc}") from None


def _online(section: _Section, repo: Path) -> OnlineConfig:
    kind = section.raw.get("type", "sqlite")
    if not isinstance(kind, str) or kind not in _ONLINE_KEYS:
        raise ConfigError(f"{section.file}: online_store.type {kind!r} is not 'redis' or 'sqlite'")
    section.only(_ONLINE_KEYS[kind], _ONLINE_KEYS)
    if kind == "sqlite":
        return SqliteConfig(path=section.path("path", "data/online.db", repo))
    file_url = section.string("url")
    url = os.environ.get(REDIS_URL_ENV) or file_url
    if not url:
        raise ConfigError(
            f"{section.file}: online_store (redis) needs a url, or set {REDIS_URL_ENV}"
        )
    if not url.startswith(_REDIS_SCHEMES):
        where = REDIS_URL_ENV if os.environ.get(REDIS_URL_ENV) else "online_store.url"
        raise ConfigError(
            f"{section.file}: {where} {url!r} must start with {', '.join(_REDIS_SCHEMES)}"
        )
    cluster = section.boolean("cluster", False)
    nodes = section.strings("startup_nodes")
    for node in nodes:
        match = _HOST_PORT.match(node)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ConfigError(
                f"{section.file}: online_store.startup_nodes entry {node!r} is not host:port"
            )
    if nodes and not cluster:
        raise ConfigError(
            f"{section.file}: online_store.startup_nodes is for a Redis Cluster; "
            "add cluster: true, or remove startup_nodes"
        )
    if cluster:
        _check_cluster_url(section.file, url)
    return RedisConfig(
        url=url,
        socket_timeout=section.seconds("socket_timeout", 5.0),
        cluster=cluster,
        startup_nodes=nodes,
    )


def _check_cluster_url(file: Path, url: str) -> None:
    """A Redis Cluster is reached over TCP and has only database 0."""
    from urllib.parse import parse_qs, urlsplit

    from featurestore.online.redis_base import mask_url

    where = REDIS_URL_ENV if os.environ.get(REDIS_URL_ENV) else "online_store.url"
    masked = mask_url(url)
    if url.startswith("unix://"):
        raise ConfigError(
            f"{file}: {where} {masked!r} is a Unix socket, but online_store has cluster: true; "
            "a Redis Cluster is reached over TCP: use redis:// or rediss://"
        )
    parts = urlsplit(url)
    db = (parse_qs(parts.query).get("db") or [parts.path.strip("/") or "0"])[0]
    if db != "0":
        raise ConfigError(
            f"{file}: {where} {masked!r} selects database {db}, but a Redis Cluster has only "
            "database 0: end the URL with /0 (or no database)"
        )


def _feature_log(section: _Section, repo: Path) -> FeatureLogConfig:
    section.only(("path", "include_online_features", "queue_size"))
    return FeatureLogConfig(
        path=section.path("path", "data/feature_log", repo),
        include_online_features=section.boolean("include_online_features", False),
        queue_size=section.integer("queue_size", 10_000) or 10_000,
    )


def _serving(section: _Section) -> ServingConfig:
    section.only(("max_entities", "max_body_mb", "max_lag"))
    return ServingConfig(
        max_entities=section.integer("max_entities", 10_000) or 10_000,
        max_body_mb=section.integer("max_body_mb", 64) or 64,
        max_lag=section.duration("max_lag"),
    )


def _reports(section: _Section) -> ReportsConfig:
    section.only(("thresholds", "exclude_features"))
    from featurestore.reports.thresholds import check_names

    thresholds = section.mapping("thresholds")
    for name, value in thresholds.items():
        if not isinstance(name, str) or not _is_number(value) or not math.isfinite(value):
            raise ConfigError(
                f"{section.file}: reports.thresholds.{name} must be a number, got {value!r}"
            )
    check_names(thresholds, f"{section.file}: reports.thresholds")
    excluded = section.strings("exclude_features")
    for ref in excluded:
        if ref.count(":") != 1:
            raise ConfigError(
                f"{section.file}: reports.exclude_features entry {ref!r} is not 'view:feature'"
            )
    return ReportsConfig(
        thresholds={name: float(value) for name, value in thresholds.items()},
        exclude_features=excluded,
    )


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
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        raise ConfigError(f"{path} is not valid YAML: {problem}{where}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of settings")
    top = _Section(raw, "", path)
    top.only(_TOP_LEVEL)
    project = top.raw.get("project")
    if not isinstance(project, str) or not project.isidentifier():
        raise ConfigError(f"{path}: 'project' must be a name like 'fraud', got {project!r}")

    def section(name: str) -> _Section:
        return _Section(top.raw.get(name), name, path)

    return RepoConfig(
        repo_path=repo,
        project=project,
        registry_path=top.path("registry", "data/registry.json", repo),
        offline_store=_offline(section("offline_store")),
        online_store=_online(section("online_store"), repo),
        feature_log=_feature_log(section("feature_log"), repo),
        serving=_serving(section("serving")),
        reports=_reports(section("reports")),
    )
