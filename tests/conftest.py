"""Shared fixtures: throwaway redis-server processes on free ports (never the shared 6379).

``redis_server``  (session) the URL of a redis-server started for this test session/worker.
``redis_url``     (function) the same server, flushed before the test.
``redis_factory`` (function) start more servers (``redis_factory("--requirepass", "pw")``),
                  each a ``RedisServer`` that can be stopped and restarted on its port;
                  all are killed when the test ends.
``redis_cluster`` (session) a throwaway Redis Cluster (tests/redis_cluster.py): 3 masters and 3
                  replicas, password-protected, cluster-node-timeout 1 s, built once per
                  session; every test using it is marked ``cluster`` and runs on one xdist
                  worker (group "redis-cluster", ``--dist loadgroup``), so one cluster serves all.
``cluster_url``   (function) its URL, the cluster healthy and flushed before the test.
``as_unprivileged`` a command prefix under which file permissions apply (for read-only
                  folder tests: root writes anywhere, so as root the command runs without
                  the capabilities that bypass permissions, through util-linux's setpriv).
``redis_session_factory`` (session) like ``redis_factory``, for servers that session-scoped
                  fixtures keep (killed when the session ends).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.redis_cluster import RedisClusterNodes

CLUSTER_PASSWORD = "cluster-s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server child process on 127.0.0.1, no persistence; only its PID is killed."""

    def __init__(self, *extra_args: str, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.extra_args = list(extra_args)
        if password is not None:
            self.extra_args += ["--requirepass", password]
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, on the same port) the server and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", *self.extra_args]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Kill this server's own process (SIGKILL: data is gone, as after a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The URL of a throwaway redis-server for this session (each xdist worker has one)."""
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's throwaway Redis, flushed: every test starts from an empty store."""
    import redis

    client = redis.Redis.from_url(redis_server)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start extra throwaway servers (args pass to redis-server); killed after the test."""
    servers: list[RedisServer] = []

    def start(*extra_args: str, password: str | None = None) -> RedisServer:
        server = RedisServer(*extra_args, password=password)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def as_unprivileged() -> list[str]:
    """A command prefix under which a read-only folder cannot be written (see module doc)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


@pytest.fixture(scope="session")
def redis_session_factory() -> Iterator[Callable[..., RedisServer]]:
    """``redis_factory`` for session-scoped fixtures: servers killed when the session ends."""
    servers: list[RedisServer] = []

    def start(*extra_args: str, password: str | None = None) -> RedisServer:
        server = RedisServer(*extra_args, password=password)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A throwaway Redis Cluster for the session (see the module docstring)."""
    try:
        nodes = RedisClusterNodes(
            tmp_path_factory.mktemp("redis-cluster"), password=CLUSTER_PASSWORD
        )
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterNodes) -> str:
    """The session's cluster, healthy and flushed: every test starts from an empty store."""
    redis_cluster.revive()
    redis_cluster.wait_healthy()
    redis_cluster.flush()
    return redis_cluster.url


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """Tests on the cluster are marked ``cluster`` and grouped on one xdist worker.

    Also makes ``--dist loadgroup`` group at all on pytest 9.2+: xdist 3.8 tells its
    scheduler a test's group by appending ``@<group>`` to ``item._nodeid``, which pytest
    9.2 no longer reads (pytest-dev/pytest-xdist#1386, fix pending in #1388), so every
    ``xdist_group`` (the cluster's, the prediction service's) was silently ignored.
    """
    for item in items:
        if item.get_closest_marker("cluster") or "redis_cluster" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.xdist_group("redis-cluster"))
    yield  # every other implementation, xdist's included
    if not getattr(config.option, "loadgroup", False):  # set on xdist's workers only
        return
    for item in items:
        marks = item.iter_markers("xdist_group")
        names = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks}
        )
        if names and not item.nodeid.endswith("@" + "_".join(names)) and hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id  # pytest 9.2's structured node ids

            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")
