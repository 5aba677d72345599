"""featurestore.yaml -> typed settings; every mistake is a ConfigError saying what is wrong."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import ConfigError
from featurestore.cli import main
from featurestore.config import (
    REDIS_URL_ENV,
    BigQueryConfig,
    DuckDBConfig,
    FeatureLogConfig,
    RedisConfig,
    ReportsConfig,
    ServingConfig,
    SqliteConfig,
    load_config,
)
from tests.strategies import corrupted


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "featurestore.yaml").write_text(text)
    return tmp_path


def test_the_example_repo_config_loads() -> None:
    repo = Path(__file__).parents[1] / "feature_repo"
    config = load_config(repo)
    assert config.project == "fraud"
    assert config.registry_path == repo.resolve() / "data" / "registry.json"
    assert isinstance(config.offline_store, DuckDBConfig)


def test_relative_paths_resolve_against_the_repo(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    repo = write(
        tmp_path,
        "project: p\nregistry: reg/r.json\nonline_store: {type: sqlite, path: o/online.db}\n"
        "feature_log: {path: logs}\n",
    )
    monkeypatch.chdir("/")
    config = load_config(repo)
    assert config.repo_path == repo.resolve()
    assert config.registry_path == repo.resolve() / "reg" / "r.json"
    assert config.online_store == SqliteConfig(path=repo.resolve() / "o" / "online.db")
    assert config.feature_log_path == repo.resolve() / "logs"


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "project: p\n"))
    assert config.registry_path == tmp_path.resolve() / "data" / "registry.json"
    assert isinstance(config.offline_store, DuckDBConfig)
    assert isinstance(config.online_store, SqliteConfig)


def test_redis_url_comes_from_the_file_or_the_environment(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    repo = write(
        tmp_path, "project: p\nonline_store: {type: redis, url: 'redis://127.0.0.1:6379/0'}\n"
    )
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    assert load_config(repo).online_store == RedisConfig(url="redis://127.0.0.1:6379/0")
    monkeypatch.setenv(REDIS_URL_ENV, "redis://127.0.0.1:7000/3")
    assert load_config(repo).online_store == RedisConfig(url="redis://127.0.0.1:7000/3")


def test_bigquery_settings(tmp_path: Path) -> None:
    repo = write(
        tmp_path, "project: p\noffline_store: {type: bigquery, project: my-project-1, dataset: d}\n"
    )
    assert load_config(repo).offline_store == BigQueryConfig(project="my-project-1", dataset="d")


@pytest.mark.parametrize(
    ("text", "culprits"),
    [
        (None, ["no featurestore.yaml", "featurestore init"]),
        ("project: [unclosed\n", ["not valid YAML"]),
        ("- a list\n", ["must be a mapping"]),
        ("registry: r.json\n", ["'project'", "None"]),
        ("project: 'my project'\n", ["'project'", "'my project'"]),
        ("project: p\noffline_store: {type: spark}\n", ["offline_store.type", "'spark'"]),
        ("project: p\noffline_store: {type: duckdb, threds: 2}\n", ["offline_store", "threds"]),
        ("project: p\nonline_store: {type: memcached}\n", ["online_store.type", "'memcached'"]),
        ("project: p\nonline_store: {type: redis}\n", ["needs a url", REDIS_URL_ENV]),
        ("project: p\nonline_store: [redis]\n", ["'online_store' must be a mapping"]),
        ("project: p\noffline_store: {type: bigquery, project: my-project-1}\n", ["dataset"]),
        # values of the wrong type or out of range name the key and what it must be
        ("project: p\nregistry: 123\n", ["registry must be a non-empty string", "123"]),
        ("project: p\noffline_store: {threads: abc}\n", ["offline_store.threads", "'abc'"]),
        ("project: p\noffline_store: {threads: -2}\n", ["offline_store.threads", "positive"]),
        ("project: p\noffline_store: {threads: 1.5}\n", ["offline_store.threads", "integer"]),
        ("project: p\noffline_store: {memory_limit: lots}\n", ["memory_limit", "'4GB'"]),
        ("project: p\nonline_store: {type: redis, url: 123}\n", ["online_store.url", "123"]),
        ("project: p\nonline_store: {type: redis, url: 'http://x'}\n", ["redis://"]),
        (
            "project: p\nonline_store: {type: redis, url: 'redis://h', socket_timeout: abc}\n",
            ["online_store.socket_timeout", "seconds", "'abc'"],
        ),
        (
            "project: p\nonline_store: {type: redis, url: 'redis://h', socket_timeout: -1}\n",
            ["online_store.socket_timeout", "positive"],
        ),
        (
            "project: p\nonline_store: {type: redis, url: 'redis://h', cluster: 'yes'}\n",
            ["online_store.cluster", "true or false"],
        ),
        (
            "project: p\nonline_store: {type: redis, url: 'redis://h', startup_nodes: [a:1]}\n",
            ["startup_nodes", "cluster: true"],
        ),
        (
            "project: p\nonline_store: {type: redis, url: 'redis://h', cluster: true, "
            "startup_nodes: ['host']}\n",
            ["startup_nodes", "'host'", "host:port"],
        ),
        (
            "project: p\nonline_store: {type: redis, url: 'redis://h:7000/2', cluster: true}\n",
            ["online_store.url", "'redis://h:7000/2'", "database 2", "only database 0", "/0"],
        ),
        (
            "project: p\nonline_store: {type: redis, url: 'redis://:pw@h?db=1', cluster: true}\n",
            ["database 1", "only database 0", "redis://:***@h?db=1"],
        ),
        (
            "project: p\nonline_store: {type: redis, url: 'unix:///tmp/r.sock', cluster: true}\n",
            ["Unix socket", "cluster: true", "over TCP"],
        ),
        ("project: p\nonline_store: {type: sqlite, path: [a]}\n", ["online_store.path"]),
        ("project: p\nfeature_log: {queue_size: 0}\n", ["feature_log.queue_size", "positive"]),
        ("project: p\nfeature_log: {include_online_features: 1}\n", ["true or false"]),
        ("project: p\nserving: {max_entities: many}\n", ["serving.max_entities", "'many'"]),
        ("project: p\nserving: {max_lag: 2 hours}\n", ["serving.max_lag", "2h", "'2 hours'"]),
        ("project: p\nserving: {max_lag: -5}\n", ["serving.max_lag", "positive"]),
        ("project: p\nreports: {thresholds: {psi_alert: high}}\n", ["psi_alert", "number"]),
        ("project: p\nreports: {exclude_features: [trips]}\n", ["'trips'", "view:feature"]),
        ("project: p\nreports: [psi]\n", ["'reports' must be a mapping"]),
        (
            "project: p\nreports: {thresholds: {psi_alrt: 0.3}}\n",
            ["unknown threshold 'psi_alrt'", "did you mean 'psi_alert'", "valid thresholds"],
        ),
        (
            "project: p\nreports: {thresholds: {psi_warn: 0.3}}\n",
            ["psi_warn (0.3) must be at most psi_alert (0.25)"],
        ),
        (
            "project: p\nreports: {thresholds: {match_rate_warn: 0.9}}\n",
            ["match_rate_warn (0.9) must be at least match_rate_alert (0.99)"],
        ),
        ("project: p\nreports: {thresholds: {min_rows: 0}}\n", ["min_rows must be at least 1"]),
        # unknown keys name the closest valid key, or the store type they belong to
        ("project: p\nregisty: r.json\n", ["unknown key 'registy'", "did you mean 'registry'"]),
        ("project: p\nserving: {max_entites: 5}\n", ["'serving.max_entites'", "'max_entities'"]),
        (
            "project: p\nonline_store: {type: redis, url: 'redis://h', path: x.db}\n",
            ["'online_store.path'", "type sqlite"],
        ),
        ("project: p\noffline_store: {type: duckdb, project: x}\n", ["type bigquery"]),
        ("project: p\noffline_store: {type: [duckdb]}\n", ["offline_store.type"]),
    ],
)
def test_mistakes_say_what_is_wrong(
    tmp_path: Path, monkeypatch, text: str | None, culprits: list[str]
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    if text is not None:
        write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    for culprit in culprits:
        assert culprit in str(info.value), f"{culprit!r} not in {info.value}"


def test_every_section_and_key_is_read_into_its_dataclass(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    repo = write(
        tmp_path,
        """
project: p
registry: reg.json
offline_store: {type: duckdb, threads: 2, memory_limit: 1GB}
online_store:
  type: redis
  url: redis://127.0.0.1:7000/0
  cluster: true
  startup_nodes: ["127.0.0.1:7001", "[::1]:7002"]
  socket_timeout: 0.5
feature_log: {path: logs, include_online_features: true, queue_size: 50}
serving: {max_entities: 100, max_lag: 1h30m}
reports:
  thresholds: {psi_warn: 0.1, psi_alert: 1}
  exclude_features: ["stats:trips"]
""",
    )
    config = load_config(repo)
    root = tmp_path.resolve()
    assert config.offline_store == DuckDBConfig(memory_limit="1GB", threads=2)
    assert config.online_store == RedisConfig(
        url="redis://127.0.0.1:7000/0",
        socket_timeout=0.5,
        cluster=True,
        startup_nodes=("127.0.0.1:7001", "[::1]:7002"),
    )
    assert config.feature_log == FeatureLogConfig(root / "logs", True, 50)
    assert config.feature_log_path == root / "logs"
    assert config.serving == ServingConfig(max_entities=100, max_lag=timedelta(hours=1, minutes=30))
    assert config.reports == ReportsConfig({"psi_warn": 0.1, "psi_alert": 1.0}, ("stats:trips",))


def test_sections_default_when_absent_or_empty(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "project: p\nserving:\nreports: {}\n"))
    assert config.feature_log == FeatureLogConfig(tmp_path.resolve() / "data" / "feature_log")
    assert (
        config.feature_log.queue_size == 10_000 and not config.feature_log.include_online_features
    )
    assert config.serving == ServingConfig(max_entities=10_000, max_lag=None)
    assert config.reports == ReportsConfig({}, ())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1h 30m", 5400),
        (45, 45),
        (0.5, 0.5),
    ],
)
def test_durations(tmp_path: Path, text: Any, expected: float) -> None:
    config = load_config(write(tmp_path, f"project: p\nserving: {{max_lag: {text}}}\n"))
    assert config.serving.max_lag == timedelta(seconds=expected)


def test_the_cli_prints_a_config_mistake_as_one_line(tmp_path: Path) -> None:
    write(tmp_path, "project: p\noffline_store: {threads: abc}\n")
    result = CliRunner().invoke(main, ["list", "--repo", str(tmp_path)])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1 and "offline_store.threads" in result.output


VALID_CONFIGS = [
    {
        "project": "p",
        "registry": "data/registry.json",
        "offline_store": {"type": "duckdb", "threads": 2, "memory_limit": "1GB"},
        "online_store": {"type": "sqlite", "path": "data/online.db"},
        "feature_log": {"path": "logs", "include_online_features": False, "queue_size": 10},
        "serving": {"max_entities": 100, "max_lag": "2h"},
        "reports": {"thresholds": {"psi_alert": 0.25}, "exclude_features": ["stats:trips"]},
    },
    {
        "project": "p",
        "offline_store": {
            "type": "bigquery",
            "project": "my-project-1",
            "dataset": "d",
            "labels": {"team": "ml"},
            "maximum_bytes_billed": 10**9,
        },
        "online_store": {
            "type": "redis",
            "url": "redis://127.0.0.1:7000/0",
            "cluster": True,
            "startup_nodes": ["127.0.0.1:7001"],
            "socket_timeout": 1,
        },
    },
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID_CONFIGS).flatmap(corrupted) | st.text(max_size=40))
def test_a_corrupted_config_is_a_config_error_never_another_exception(document: Any) -> None:
    """Whatever featurestore.yaml holds, load_config returns settings or raises ConfigError,
    and the CLI prints one line: never another exception, never a traceback."""
    import tempfile

    text = document if isinstance(document, str) else yaml.safe_dump(document)
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as env:
        env.delenv(REDIS_URL_ENV, raising=False)
        (Path(folder) / "featurestore.yaml").write_text(text)
        try:
            load_config(folder)
        except ConfigError as exc:
            assert "\n" not in str(exc)
        result = CliRunner().invoke(main, ["list", "--repo", folder])
        # Nothing was applied: the best case is the registry's one-line error.
        assert isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code == 1
        assert result.output.startswith("error: ") and result.output.count("\n") == 1


def test_a_cluster_setting_is_never_silently_ignored(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """cluster: true opens the cluster store, whose discovery names what it could not reach."""
    import socket

    from featurestore.errors import OnlineStoreUnavailable
    from featurestore.online.base import open_online_store

    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = write(
        tmp_path,
        f"project: p\nonline_store: {{type: redis, url: 'redis://127.0.0.1:{port}', "
        "cluster: true, socket_timeout: 1}\n",
    )
    with pytest.raises(OnlineStoreUnavailable, match=f"Redis Cluster at redis://127.0.0.1:{port}"):
        open_online_store(load_config(repo))


def test_the_environment_url_of_a_cluster_is_checked_too(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    repo = write(
        tmp_path, "project: p\nonline_store: {type: redis, url: 'redis://h:1/0', cluster: true}\n"
    )
    monkeypatch.setenv(REDIS_URL_ENV, "redis://127.0.0.1:7000/3")
    with pytest.raises(
        ConfigError, match=f"{REDIS_URL_ENV} 'redis://127.0.0.1:7000/3' selects database 3"
    ):
        load_config(repo)
    monkeypatch.setenv(REDIS_URL_ENV, "rediss://127.0.0.1:7000")
    assert load_config(repo).online_store == RedisConfig(
        url="rediss://127.0.0.1:7000", cluster=True
    )
