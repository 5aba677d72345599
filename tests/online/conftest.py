"""Fixtures for online tests: an ``OnlineStore`` (``store``) and the applied ``online_repo``
(``online_fs``), each on SQLite, then on a throwaway Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from online_repo import write_repo

from featurestore import FeatureStore
from featurestore.online.base import OnlineStore
from featurestore.online.redis import RedisOnlineStore
from featurestore.online.sqlite import SqliteOnlineStore


@pytest.fixture(params=["sqlite", "redis"])
def online_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeatureStore]:
    """The applied repo, with its online store on SQLite, then on a flushed throwaway Redis."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        online = f"{{type: redis, url: '{url}'}}"
    else:
        online = "{type: sqlite, path: data/online.db}"
    fs = FeatureStore(write_repo(tmp_path, online))
    fs.apply()
    yield fs
    fs.close()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """A store for project "proj": a SQLite file, then a flushed throwaway Redis."""
    if request.param == "redis":
        opened: OnlineStore = RedisOnlineStore(request.getfixturevalue("redis_url"), "proj")
    else:
        opened = SqliteOnlineStore(tmp_path / "online.db", "proj")
    yield opened
    opened.close()
