"""Fixtures for online tests: an ``OnlineStore`` (``store``) and the applied ``online_repo``
(``online_fs``), each on SQLite, on a throwaway Redis, then on the throwaway Redis Cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from online_repo import write_repo

from featurestore import FeatureStore
from featurestore.online.base import OnlineStore
from featurestore.online.redis import RedisOnlineStore
from featurestore.online.redis_cluster import RedisClusterOnlineStore
from featurestore.online.sqlite import SqliteOnlineStore

STORES = ["sqlite", "redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)]


@pytest.fixture(params=STORES)
def online_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeatureStore]:
    """The applied repo, with its online store on SQLite, a flushed throwaway Redis, then the
    flushed throwaway Redis Cluster."""
    if request.param == "redis-cluster":
        url = request.getfixturevalue("cluster_url")
        online = f"{{type: redis, url: '{url}', cluster: true}}"
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        online = f"{{type: redis, url: '{url}'}}"
    else:
        online = "{type: sqlite, path: data/online.db}"
    fs = FeatureStore(write_repo(tmp_path, online))
    fs.apply()
    yield fs
    fs.close()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """A store for project "proj": a SQLite file, a flushed throwaway Redis, then the flushed
    throwaway Redis Cluster."""
    if request.param == "redis-cluster":
        opened: OnlineStore = RedisClusterOnlineStore(
            request.getfixturevalue("cluster_url"), "proj"
        )
    elif request.param == "redis":
        opened = RedisOnlineStore(request.getfixturevalue("redis_url"), "proj")
    else:
        opened = SqliteOnlineStore(tmp_path / "online.db", "proj")
    yield opened
    opened.close()
