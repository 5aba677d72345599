"""Throwaway Redis for the benchmarks: each system gets its own, so ``INFO memory`` is that
system's alone. On 127.0.0.1, free ports, no persistence; stopped by their own PIDs.

``RedisServer`` is one redis-server; ``LocalCluster`` a Redis Cluster of masters and
replicas (tests/redis_cluster.py starts it), whose memory is summed over the masters only:
replicas hold copies of the same data.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.redis_cluster import RedisClusterNodes  # the repo root, just added to sys.path


class RedisServer:
    """Start a redis-server child and wait until it answers; ``baseline`` is its empty memory."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        self.baseline = self.used_memory()

    @property
    def online_store(self) -> str:
        """The ``online_store`` section of featurestore.yaml for this server."""
        return f"{{type: redis, url: 'redis://127.0.0.1:{self.port}/0'}}"

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def keys(self) -> int:
        return int(self.client.dbsize())

    def flushall(self) -> None:
        self.client.flushall()

    def stop(self) -> None:
        self.client.close()
        self.process.kill()
        self.process.wait()


class LocalCluster:
    """A local Redis Cluster: ``masters`` masters with ``replicas`` replicas each (node
    timeout 5 s, so a loaded machine never fails a node over). ``used_memory`` is the sum
    over the masters of ``used_memory`` less what replication itself holds there (the
    replication backlog, a fixed ring of ``repl-backlog-size``, 1 MB by default, and the
    replica links' output buffers): replicas are left out, they hold copies."""

    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
        self.nodes = RedisClusterNodes(
            self.folder, masters=masters, replicas=replicas, node_timeout_ms=5000
        )
        self.baseline = self.used_memory()

    @property
    def online_store(self) -> str:
        return f"{{type: redis, url: '{self.nodes.url}', cluster: true}}"

    def _masters(self) -> list[redis.Redis]:
        return [self.nodes.client(node) for node in self.nodes.masters()]

    def used_memory(self) -> int:
        total = 0
        for client in self._masters():
            memory = client.info("memory")
            replication = memory.get("mem_replication_backlog", 0) + memory.get(
                "mem_clients_slaves", 0
            )
            total += int(memory["used_memory"]) - int(replication)
            client.close()
        return total

    def keys(self) -> int:
        total = 0
        for client in self._masters():
            total += int(client.dbsize())
            client.close()
        return total

    def flushall(self) -> None:
        self.nodes.flush()

    def stop(self) -> None:
        self.nodes.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
