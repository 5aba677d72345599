"""A throwaway Redis Cluster on 127.0.0.1: masters and replicas started by this process.

``RedisClusterNodes(folder)`` starts ``masters * (1 + replicas)`` redis-server processes
(``--cluster-enabled yes``, each with its own config file in ``folder``, no persistence) on
random free ports and joins them with ``redis-cli --cluster create ... --cluster-replicas``.
It can kill a node (SIGKILL, as a crash), restart it on its port (it rejoins as a replica
once a replica took its slots over), wait for the cluster to be healthy, reshard slots, and
flush the data. Only the PIDs it started are ever killed. Used by tests/conftest.py and by
the benchmarks' cluster mode.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis

from featurestore.errors import FeatureStoreError

T = TypeVar("T")
HOST = "127.0.0.1"


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = random.randrange(20_000, 45_000)
        if (
            port not in taken
            and port + 10_000 not in taken
            and _free(port)
            and _free(port + 10_000)
        ):
            taken.update((port, port + 10_000))
            return port


def until(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``check`` until it returns something truthy (a Redis or featurestore error counts
    as not yet); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (redis.RedisError, OSError, FeatureStoreError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"Redis Cluster: {what} did not happen within {timeout:g} s")
        time.sleep(0.05)


@dataclass
class Node:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{HOST}:{self.port}"


class RedisClusterNodes:
    """A local cluster: ``masters`` masters with ``replicas`` replicas each (see module doc)."""

    def __init__(
        self,
        folder: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        password: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                raise FileNotFoundError(f"{tool} is not installed")
        self.password = password
        self.tls = tls  # (certificate, key): TLS only, the certificate is also the CA
        self.node_timeout_ms = node_timeout_ms
        self.replicas = replicas
        taken: set[int] = set()
        self.nodes = []
        for _ in range(masters * (1 + replicas)):
            port = free_cluster_port(taken)
            self.nodes.append(Node(port, folder / f"node-{port}"))
        try:
            for node in self.nodes:
                node.folder.mkdir(parents=True)
                self.start(node)
            args = ["redis-cli", *self._auth(), "--cluster", "create"]
            args += [n.name for n in self.nodes]
            args += ["--cluster-replicas", str(replicas), "--cluster-yes"]
            subprocess.run(args, check=True, capture_output=True, timeout=60)
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    # --- addresses and clients ------------------------------------------------------------

    @property
    def url(self) -> str:
        """A URL naming the first node (the client discovers the others)."""
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}{HOST}:{self.nodes[0].port}/0"

    def client(self, node: Node) -> redis.Redis:
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.tls[0])} if self.tls else {}
        return redis.Redis(HOST, node.port, password=self.password, socket_timeout=5, **tls)

    def _auth(self) -> list[str]:
        args = ["-a", self.password, "--no-auth-warning"] if self.password is not None else []
        return args + (["--tls", "--cacert", str(self.tls[0])] if self.tls else [])

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None]

    def _ask(self, command: Callable[[redis.Redis], T]) -> T:
        """``command`` on the first live node that answers."""
        error: Exception | None = None
        for node in self.alive():
            client = self.client(node)
            try:
                return command(client)
            except redis.RedisError as exc:
                error = exc
            finally:
                client.close()
        raise RuntimeError(f"no node of the cluster answers: {error}")

    def topology(self) -> dict[str, Any]:
        """``{"masters": {port: [slot ranges]}, "replicas": {port: master port}, "ids": {port:
        node id}}`` as a live node sees it (failed nodes left out)."""
        text = self._ask(lambda c: c.execute_command("CLUSTER", "NODES"))
        if isinstance(text, bytes):
            text = text.decode()
        if isinstance(text, dict):  # redis-py may parse it
            text = "\n".join(
                f"{v['node_id']} {k} {v['flags']} {v['master_id']} 0 0 0 connected "
                + " ".join("-".join(map(str, s)) for s in v.get("slots", []))
                for k, v in text.items()
            )
        masters: dict[int, list[str]] = {}
        replicas: dict[int, str] = {}
        ids: dict[int, str] = {}
        for line in text.splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            ids[port] = fields[0]
            if "fail" in fields[2]:
                continue
            if "master" in fields[2]:
                masters[port] = fields[8:]
            else:
                replicas[port] = fields[3]
        by_id = {v: k for k, v in ids.items()}
        return {
            "masters": masters,
            "replicas": {p: by_id.get(m) for p, m in replicas.items()},
            "ids": ids,
        }

    def masters(self) -> list[Node]:
        """The live masters that serve slots."""
        return [self.node(p) for p, slots in self.topology()["masters"].items() if slots]

    def master_of(self, key: str | bytes) -> Node:
        """The master serving ``key``'s slot now."""
        return self.node(self.owners([key])[0])

    def owners(self, keys: Sequence[str | bytes]) -> list[int]:
        """The port of the master serving each key's slot now."""
        from redis.crc import key_slot

        ranges = [
            (start, end, port)
            for port, slots in self.topology()["masters"].items()
            for start, end in _ranges(slots)
        ]
        out = []
        for key in keys:
            slot = key_slot(key.encode() if isinstance(key, str) else key)
            out.append(next(p for start, end, p in ranges if start <= slot <= end))
        return out

    # --- processes ------------------------------------------------------------------------

    def start(self, node: Node) -> None:
        """Start (or restart, on its port, with its cluster config file) one node."""
        args = ["redis-server", "--port", str(node.port), "--bind", HOST, "--dir", str(node.folder)]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(self.node_timeout_ms)]
        # a replica takes over however long it was cut off: the tests kill masters at will
        args += ["--cluster-replica-validity-factor", "0"]
        args += ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        if self.password is not None:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.tls is not None:
            cert, key = (str(p) for p in self.tls)
            args[1:3] = ["--port", "0", "--tls-port", str(node.port)]
            args += ["--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert]
            args += ["--tls-cluster", "yes", "--tls-replication", "yes", "--tls-auth-clients", "no"]
        node.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(f"node {node.name} answering", lambda: self.client(node).ping(), timeout=10)

    def kill(self, node: Node) -> None:
        """SIGKILL one node's own process: its data is gone, as after a crash."""
        if node.process is not None:
            node.process.kill()
            node.process.wait(timeout=10)
            node.process = None

    def stop(self) -> None:
        for node in self.nodes:
            self.kill(node)

    def replace(self, node: Node, timeout: float = 30.0) -> Node:
        """Kill master ``node``, wait until one of its replicas serves its slots, restart
        it (it rejoins as a replica of the new master) and wait until the cluster is
        healthy again; the new master."""
        slots = self.topology()["masters"][node.port]
        self.kill(node)
        promoted = self.wait_taken_over(node, slots, timeout)
        self.start(node)
        self.wait_healthy(timeout)
        return promoted

    def wait_taken_over(self, node: Node, slots: list[str], timeout: float = 30.0) -> Node:
        """Wait until another live master serves ``slots`` (those of ``node``) and every live
        node says cluster_state:ok again (a node that has not yet heard of the promotion
        still answers "the cluster is down" for a moment)."""

        def promoted() -> int | None:
            masters = self.topology()["masters"]
            return next((p for p, s in masters.items() if s == slots and p != node.port), None)

        new_master = self.node(until(f"a replica taking over {node.name}", promoted, timeout))
        until("every live node saying cluster_state:ok", self._states_ok, timeout)
        return new_master

    def _states_ok(self) -> bool:
        for node in self.alive():
            client = self.client(node)
            try:
                info = client.execute_command("CLUSTER", "INFO")
            finally:
                client.close()
            if "cluster_state:ok" not in (info.decode() if isinstance(info, bytes) else str(info)):
                return False
        return True

    def revive(self) -> None:
        """Start every node a test killed and left down (it failed before restarting it):
        each rejoins as a replica, so one failing test does not leave the next ones a
        cluster that can never be healthy."""
        for node in self.nodes:
            if node.process is None:
                self.start(node)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every node is up, says cluster_state:ok and agrees on the slot map; every master
        serving slots has its replicas, in sync."""

        def healthy() -> bool:
            maps = set()
            for node in self.alive():
                client = self.client(node)
                try:
                    info = client.execute_command("CLUSTER", "INFO")
                    if isinstance(info, bytes):
                        info = info.decode()
                    if "cluster_state:ok" not in str(info):
                        return False
                    maps.add(str(sorted(map(str, client.execute_command("CLUSTER", "SLOTS")))))
                    role = client.info("replication")
                    if role["role"] == "slave" and role.get("master_link_status") != "up":
                        return False
                finally:
                    client.close()
            topology = self.topology()
            counts = {p: 0 for p, s in topology["masters"].items() if s}
            for master in topology["replicas"].values():
                if master in counts:
                    counts[master] += 1
            return len(maps) == 1 and all(c == self.replicas for c in counts.values())

        until("a healthy cluster", healthy, timeout)

    # --- data -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Delete every key on every master, and wait for the replicas to follow."""
        for node in self.masters():
            client = self.client(node)
            try:
                client.flushall()
                client.execute_command("WAIT", self.replicas, 5000)
            finally:
                client.close()

    def reshard(self, source: Node, target: Node, slots: int, timeout: float = 60.0) -> None:
        """Move ``slots`` slots (and their keys) from ``source`` to ``target`` with
        ``redis-cli --cluster reshard``; returns when it is done."""
        ids = self.topology()["ids"]
        args = ["redis-cli", *self._auth(), "--cluster", "reshard", source.name]
        args += ["--cluster-from", ids[source.port], "--cluster-to", ids[target.port]]
        args += ["--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "20"]
        subprocess.run(args, check=True, capture_output=True, timeout=timeout)


def _ranges(slots: list[str]) -> list[tuple[int, int]]:
    out = []
    for part in slots:
        if part.startswith("["):  # a slot being migrated
            continue
        start, _, end = part.partition("-")
        out.append((int(start), int(end or start)))
    return out


def flush_cluster(url: str) -> None:
    """Delete every key on every master of the cluster ``url`` names."""
    from redis.cluster import RedisCluster

    client = RedisCluster.from_url(url)
    try:
        for node in client.get_primaries():
            client.get_redis_connection(node).flushall()
    finally:
        client.close()


def dump_project(url: str, project: str) -> dict[bytes, Any]:
    """Every key of ``project`` on every master of the cluster ``url`` names, its name
    without the project (so two projects' dumps compare), with its full content."""
    from redis.cluster import RedisCluster

    client = RedisCluster.from_url(url)
    out: dict[bytes, Any] = {}
    try:
        for node in client.get_primaries():
            connection = client.get_redis_connection(node)
            for key in connection.scan_iter(match=f"{project}[|#]*", count=1000):
                kind = connection.type(key)
                value = connection.hgetall(key) if kind == b"hash" else (kind, connection.dump(key))
                if isinstance(value, dict) and key.endswith(b"#meta"):
                    value.pop(b"epoch")  # random, so two stores' dumps compare
                out[key[len(project) :]] = value
    finally:
        client.close()
    return out
