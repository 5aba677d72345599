"""Faults, on throwaway redis-servers of the tests' own (never the shared one), and on the
throwaway Redis Cluster (the cluster's own faults, failovers and resharding, are in
tests/test_cluster_faults.py).

- Redis killed in the middle of a materialization: a clear error naming the view, the
  watermark where it was, and after a restart on the same port a re-run completes, leaving
  the store identical to a clean run.
- A materialization process killed with SIGKILL halfway, then re-run: the store (every key,
  field and value) is identical to a clean run's; on one server and on the cluster.
- An unreachable or silent Redis (or cluster node) on read: a clear error within the
  configured timeout.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featurestore import FeatureStore, MaterializationError, OnlineStoreUnavailable
from featurestore.materialize import Progress, materialize_incremental
from featurestore.online.base import Watermark, open_online_store
from tests.redis_cluster import dump_project

ON_BOTH = ["redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)]

T0 = datetime(2025, 6, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
USERS = 6_000
BATCH = 500  # entity rows per batch: a run of USERS rows is 12 batches

DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, FileSource
from featurestore.types import Float32, Int64, String

user = Entity(name="user", join_keys=["user_id"])

stats = FeatureView(
    name="stats",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[Field(name="user_id", dtype=Int64), Field(name="rate", dtype=Float32),
            Field(name="trips", dtype=Int64), Field(name="city", dtype=String)],
    source=FileSource(path="data/stats", timestamp_field="event_ts",
                      created_timestamp_column="created_ts"),
)
"""


def write_part(repo: Path, part: int, hour: int) -> None:
    """Rows for every user at ``T0 + hour``, created just after; values vary by part."""
    users = list(range(USERS))
    event = T0 + timedelta(hours=hour)
    folder = repo / "data" / "stats"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array(users, pa.int64()),
                "event_ts": pa.array([event] * USERS, TS),
                "created_ts": pa.array([event + timedelta(seconds=u % 7) for u in users], TS),
                "rate": pa.array([u / 7 + part for u in users], pa.float32()),
                "trips": pa.array([u * 1_000_003 + part for u in users], pa.int64()),
                "city": pa.array([f"city-{u % 13}-{part}" for u in users], pa.string()),
            }
        ),
        folder / f"part-{part}.parquet",
    )


def make_repo(
    path: Path, url: str, *, cluster: bool = False, project: str = "faults"
) -> FeatureStore:
    path.mkdir(parents=True, exist_ok=True)
    (path / "featurestore.yaml").write_text(
        f"project: {project}\nonline_store: {{type: redis, url: '{url}', socket_timeout: 2, "
        f"cluster: {str(cluster).lower()}}}\n"
    )
    (path / "definitions.py").write_text(DEFINITIONS)
    write_part(path, 0, hour=1)
    store = FeatureStore(path)
    store.apply()
    return store


def dump(url: str) -> dict[bytes, Any]:
    """Every key of the database with its full content (hash fields and values)."""
    client = redis.Redis.from_url(url)
    try:
        out: dict[bytes, Any] = {}
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            out[key] = client.hgetall(key) if kind == b"hash" else (kind, client.dump(key))
            if key.endswith(b"#meta"):
                out[key].pop(b"epoch")  # random, so two stores' dumps compare
        return out
    finally:
        client.close()


def clean_run(tmp_path: Path, url: str, end: datetime, cluster: bool = False) -> dict[bytes, Any]:
    """Parts 0 and 1 materialized up to ``end`` in one undisturbed run at ``url``; its dump
    (on a cluster, of its own project "clean")."""
    repo = tmp_path / "clean"
    store = make_repo(repo, url, cluster=cluster, project="clean" if cluster else "faults")
    write_part(repo, 1, hour=2)
    store.materialize_incremental(end)
    store.close()
    return dump_project(url, "clean") if cluster else dump(url)


def wait_until_loaded(url: str) -> None:
    """Wait until a restarted server has loaded its append-only file (LOADING answers)."""
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


class KillAfter(Progress):
    """Materialization hooks that call ``action`` once ``batches`` batches are written."""

    def __init__(self, batches: int, action: Callable[[], None]) -> None:
        self.left = batches
        self.action = action

    def batch_written(self, view: str, rows_read: int, rows_written: int) -> None:
        self.left -= 1
        if self.left == 0:
            self.action()


def watermark(store: FeatureStore) -> Watermark | None:
    with open_online_store(store.config) as online:
        return online.get_watermark("stats")


def test_redis_killed_mid_run_keeps_the_watermark_and_a_rerun_completes(
    tmp_path: Path, redis_factory: Callable[..., Any]
) -> None:
    # Persistence on, so what was written before the kill survives the restart.
    aof = tmp_path / "aof"
    aof.mkdir()
    server = redis_factory("--appendonly", "yes", "--appendfsync", "always", "--dir", str(aof))
    repo = tmp_path / "repo"
    store = make_repo(repo, server.url)
    store.materialize_incremental(T0 + timedelta(hours=1))
    before = watermark(store)
    assert before == Watermark(T0 + timedelta(hours=1), T0 + timedelta(hours=1, seconds=6))

    write_part(repo, 1, hour=2)
    with open_online_store(store.config) as online:
        started = time.monotonic()
        with pytest.raises(MaterializationError) as error:
            materialize_incremental(
                store.config,
                store.state,
                online,
                T0 + timedelta(hours=2),
                progress=KillAfter(3, server.stop),
                batch_rows=BATCH,
            )
        assert time.monotonic() - started < 10
    message = str(error.value)
    assert "'stats' failed" in message and "does not answer" in message
    assert "watermark did not move" in message
    assert isinstance(error.value.__cause__, OnlineStoreUnavailable)

    server.start()  # same port, same append-only file
    wait_until_loaded(server.url)
    assert watermark(store) == before

    store.materialize_incremental(T0 + timedelta(hours=2))
    assert watermark(store) == Watermark(
        T0 + timedelta(hours=2), T0 + timedelta(hours=2, seconds=6)
    )
    got = dump(server.url)
    store.close()

    # A clean server: run 1 with part 0 only, then run 2 with both parts.
    clean = redis_factory()
    clean_repo = tmp_path / "clean"
    clean_store = make_repo(clean_repo, clean.url)
    clean_store.materialize_incremental(T0 + timedelta(hours=1))
    write_part(clean_repo, 1, hour=2)
    clean_store.materialize_incremental(T0 + timedelta(hours=2))
    clean_store.close()
    assert got == dump(clean.url)
    assert len(got) == USERS + 1  # one hash per user, plus the watermarks hash


CHILD = """
import sys
import time
from datetime import datetime

from featurestore import FeatureStore
from featurestore.materialize import Progress, materialize_incremental
from featurestore.online.base import open_online_store


class Report(Progress):
    def batch_written(self, view, rows_read, rows_written):
        print("batch", flush=True)
        time.sleep(0.05)  # give the parent time to kill us halfway


store = FeatureStore(sys.argv[1])
with open_online_store(store.config) as online:
    materialize_incremental(
        store.config, store.state, online, datetime.fromisoformat(sys.argv[2]),
        progress=Report(), batch_rows=int(sys.argv[3]),
    )
print("done", flush=True)
"""


@pytest.mark.parametrize("online", ON_BOTH)
def test_sigkill_halfway_then_rerun_equals_a_clean_run(
    tmp_path: Path, redis_factory: Callable[..., Any], online: str, request: pytest.FixtureRequest
) -> None:
    cluster = online == "redis-cluster"
    if cluster:  # one cluster, two projects
        killed_url = clean_url = request.getfixturevalue("cluster_url")
    else:
        killed_url = redis_factory().url
        clean_url = killed_url[: -len("/0")] + "/1"

    def dump_run() -> dict[bytes, Any]:
        return dump_project(killed_url, "faults") if cluster else dump(killed_url)

    repo = tmp_path / "repo"
    store = make_repo(repo, killed_url, cluster=cluster)
    write_part(repo, 1, hour=2)
    end = (T0 + timedelta(hours=3)).isoformat()

    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    child = subprocess.Popen(
        [sys.executable, str(script), str(repo), end, str(BATCH)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for _ in range(4):
        assert child.stdout.readline().strip() == "batch"
    child.kill()  # SIGKILL, to this child's own PID
    child.wait(timeout=10)
    assert child.returncode == -9
    assert watermark(store) is None  # killed before the end of the run
    assert 0 < len(dump_run()) < USERS

    store.materialize_incremental(datetime.fromisoformat(end))
    store.close()
    got = dump_run()
    assert got == clean_run(tmp_path, clean_url, datetime.fromisoformat(end), cluster)
    assert len(got) == USERS + 1


@pytest.mark.parametrize("cluster", [False, True], ids=["redis", "redis-cluster"])
def test_unreachable_redis_on_read_is_a_clear_error(tmp_path: Path, cluster: bool) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = FeatureStore(_read_repo(tmp_path, port, cluster))
    started = time.monotonic()
    with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{port}"):
        store.get_online_features(features=["stats:rate"], entity_rows=[{"user_id": 1}])
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("cluster", [False, True], ids=["redis", "redis-cluster"])
def test_a_silent_redis_on_read_times_out(tmp_path: Path, cluster: bool) -> None:
    """A server that accepts connections and never answers: the socket timeout ends it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # connections complete in the backlog; nothing ever replies
        port = listener.getsockname()[1]
        store = FeatureStore(_read_repo(tmp_path, port, cluster))
        started = time.monotonic()
        with pytest.raises(OnlineStoreUnavailable, match="does not answer"):
            store.get_online_features(features=["stats:rate"], entity_rows=[{"user_id": 1}])
        took = time.monotonic() - started
        assert 0.45 <= took < 0.5 + 0.45  # socket_timeout 0.5 s, once: a timeout is not retried


class NotRedis:
    """A server on 127.0.0.1 that answers every connection in HTTP, as a web server given
    the Redis port by mistake would (a thread; stopped with the ``with`` block)."""

    def __enter__(self) -> int:
        import threading

        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()
        return int(self.listener.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed by __exit__
                return
            with connection:
                connection.recv(4096)
                connection.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n<html>no</html>")

    def __exit__(self, *exc: object) -> None:
        self.listener.close()


@pytest.mark.parametrize("cluster", [False, True], ids=["redis", "redis-cluster"])
def test_a_server_that_is_not_redis_is_a_clear_error(tmp_path: Path, cluster: bool) -> None:
    """Defect: a URL pointing at a server that does not speak Redis gave redis-py's
    InvalidResponse, untranslated (a 500 with a traceback from the prediction service);
    it is the online store not answering, named, like a closed port."""
    with NotRedis() as port:
        store = FeatureStore(_read_repo(tmp_path, port, cluster))
        with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{port}.*does not answer"):
            store.get_online_features(features=["stats:rate"], entity_rows=[{"user_id": 1}])
        store.close()


def _read_repo(tmp_path: Path, port: int, cluster: bool = False) -> Path:
    """An applied repo whose Redis (or cluster node) URL points at ``port`` (apply touches no
    online store)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "featurestore.yaml").write_text(
        "project: faults\n"
        f"online_store: {{type: redis, url: 'redis://127.0.0.1:{port}/0', socket_timeout: 0.5, "
        f"cluster: {str(cluster).lower()}}}\n"
    )
    (repo / "definitions.py").write_text(DEFINITIONS)
    write_part(repo, 0, hour=1)
    FeatureStore(repo).apply()
    return repo
