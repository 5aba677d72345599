"""featurestore.yaml -> typed settings; every mistake is a ConfigError saying what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore import ConfigError
from featurestore.config import (
    REDIS_URL_ENV,
    BigQueryConfig,
    DuckDBConfig,
    RedisConfig,
    SqliteConfig,
    load_config,
)


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
