"""How the cluster store talks to a Redis Cluster: per-node pipelines over redis-py's slot map.

redis-py's ``RedisCluster`` does discovery (from the URL's node and ``startup_nodes``), keeps
the slot map (``nodes_manager.slots_cache``) and each node's connection settings (password,
TLS, timeouts). ``ClusterClient`` uses those and sends the store's commands itself, because
the store needs three things redis-py's cluster pipeline does not give: every node's
pipeline sent before any reply is read (a request costs one round trip, however many nodes
it touches), commands packed in C by hiredis (redis-py's pipeline costs microseconds of
Python per command), and ``WAIT`` on the very connection that carried a run's writes.

- ``route``: commands addressed by key, sent to the master serving each key's slot, in one
  round; MOVED updates redis-py's slot map and resends, ASK resends with ``ASKING`` to the
  named node, TRYAGAIN waits 50 ms, NOSCRIPT loads the scripts on that node; at most 10
  rounds. Error replies other than these are returned to the caller.
- ``keyed``: one script applied to many keys, one call per master and chunk of keys (the
  scripts take keys of several slots of their node, see redis_scripts.py); a call the node
  stopped at a key it does not serve (a slot moving or moved) is sent again one call per
  key, which ``route`` redirects key by key.
- ``exchange``: the round itself. A node whose connection was found reset is tried once
  more at once (a restarted node; every command the store sends is idempotent); a node
  that does not answer within ``socket_timeout``, or refuses the connection, fails the whole
  round with ``OnlineStoreUnavailable`` naming it, and marks the slot map stale: it is read
  again before the next request, which is how requests recover after a failover.
- ``replicated``: ``WAIT`` on each master a thread wrote to, for every replica the cluster
  lists for it.

Each thread has its own connection to each node (made by the node's redis-py pool, with
its settings), and its own set of masters written to since its last ``WAIT``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from featurestore.errors import ConfigError, OnlineStoreError, OnlineStoreUnavailable
from featurestore.online import redis_scripts as lua

NON_LOCAL = "non local key"  # a cross-slot script met a key its node does not serve
ROUNDS = 10  # redirect rounds (MOVED, ASK, TRYAGAIN) before a request gives up
TRYAGAIN_PAUSE = 0.05  # seconds

# (routing key, command): a command sent to the master serving the key's slot
Call = tuple[bytes, tuple[Any, ...]]
# one script applied to many keys: the keys, the arguments after them, per-key arguments
Job = tuple[Sequence[bytes], Sequence[Any], Sequence[Any] | None]
# per job, its (key positions, reply) pairs
Done = list[list[tuple[list[int], Any]]]


class ClusterClient:
    """The masters of one Redis Cluster, as the cluster store uses them (module docstring).

    ``location``: the URL with its password masked, for messages. Nothing connects until
    the first call.
    """

    def __init__(
        self, url: str, location: str, socket_timeout: float, startup_nodes: Sequence[str]
    ) -> None:
        import hiredis
        from redis import exceptions

        self.location = location
        self.socket_timeout = socket_timeout
        self._url = url
        self._startup_nodes = tuple(startup_nodes)
        self._pack = hiredis.pack_command
        self._client: Any = None
        self._stale = False  # read the slot map again before the next request
        self._owners: list[str] | None = None  # slot -> its master's name, from the slot map
        self._masters: dict[str, int] | None = None  # master -> its replica count, likewise
        self._local = threading.local()
        self._lock = threading.Lock()
        self._own_connections: list[Any] = []
        self._errors = (exceptions.ConnectionError, exceptions.TimeoutError)
        self._reset = exceptions.ConnectionError
        self._auth_error = exceptions.AuthenticationError
        self._response_error = exceptions.ResponseError
        self._noscript = exceptions.NoScriptError
        self._moved, self._ask = exceptions.MovedError, exceptions.AskError
        self._try_again, self._down = exceptions.TryAgainError, exceptions.ClusterDownError
        self._redis_error = (exceptions.RedisError, exceptions.RedisClusterException)

    # --- the cluster and its nodes ----------------------------------------------------------

    def cluster(self) -> Any:
        """redis-py's cluster client, discovering the cluster on first use and reading the
        slot map again when the last request found it stale."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._discover(self._connect)
        elif self._stale:
            try:
                self._discover(self._client.nodes_manager.initialize)
            except OnlineStoreUnavailable:
                pass  # the old map still names the node at fault, which the request will name
            else:
                self._stale = False
                self._owners = self._masters = None
        return self._client

    def _slot_owners(self) -> list[str]:
        """Each slot's master name ("" for none), from redis-py's slot map: one list lookup
        per key instead of a dict lookup and an attribute read."""
        owners = self._owners
        if owners is None:
            slots = self.cluster().nodes_manager.slots_cache
            owners = [slots[s][0].name if slots.get(s) else "" for s in range(16_384)]
            self._owners = owners
        return owners

    def _connect(self) -> Any:
        from redis.cluster import ClusterNode, RedisCluster

        nodes = []
        for node in self._startup_nodes:
            host, port = node.rsplit(":", 1)
            nodes.append(ClusterNode(host.strip("[]"), int(port)))
        timeout = self.socket_timeout
        return RedisCluster.from_url(
            self._url, startup_nodes=nodes, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def _discover(self, action: Callable[[], Any]) -> Any:
        """Run ``action`` (discovery), turning its failures into clear errors."""
        try:
            return action()
        except ValueError as exc:
            raise OnlineStoreError(f"invalid Redis URL {self.location}: {exc}") from None
        except self._redis_error as exc:
            causes = f"{exc} {exc.__cause__ or ''}"
            if "Cluster mode is not enabled" in causes:
                raise ConfigError(
                    f"online_store has 'cluster: true', but {self.location} is a single Redis "
                    "server (cluster mode is disabled there): remove 'cluster: true', or point "
                    "the url at a node of the cluster"
                ) from None
            if isinstance(exc.__cause__, self._auth_error) or "WRONGPASS" in causes:
                raise OnlineStoreUnavailable(
                    f"Redis Cluster at {self.location} refused the credentials in its URL: "
                    f"{exc.__cause__}. Put the right password in the URL: "
                    "redis://:PASSWORD@host:port/0"
                ) from None
            raise OnlineStoreUnavailable(
                f"Redis Cluster at {self.location} does not answer (discover its nodes): "
                f"{str(exc).rstrip('.')}. Are its nodes running, and the URL (featurestore.yaml "
                "or FEATURESTORE_REDIS_URL) and startup_nodes right?"
            ) from None

    def master_of(self, key: bytes) -> str:
        """The name (host:port) of the master serving ``key``'s slot, in the slot map."""
        from redis.crc import key_slot

        self.cluster()
        name = self._slot_owners()[key_slot(key)]
        if not name:
            self._stale = True
            raise OnlineStoreUnavailable(
                f"no master serves the slot of {key!r} in Redis Cluster {self.location}"
            )
        return name

    def masters(self) -> dict[str, int]:
        """Each master of the slot map, with how many replicas the cluster lists for it
        (CLUSTER SLOTS leaves out replicas it sees failing)."""
        masters = self._masters
        if masters is None:
            slots = self.cluster().nodes_manager.slots_cache
            ranges = {id(nodes): nodes for nodes in slots.values()}.values()  # lists are shared
            masters = self._masters = {nodes[0].name: len(nodes) - 1 for nodes in ranges}
        return masters

    def _thread(self) -> Any:
        """This thread's connections, and the masters it wrote to since its last WAIT."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connections, local.written, local.pid = {}, set(), os.getpid()
        return local

    def written(self) -> set[str]:
        """The masters this thread wrote to since its last ``replicated`` (a mutable set)."""
        nodes: set[str] = self._thread().written
        return nodes

    def _connection(self, name: str) -> Any:
        """This thread's own connection to node ``name``, with the cluster's settings."""
        from redis.cluster import ClusterNode

        local = self._thread()
        connection = local.connections.get(name)
        if connection is None:
            client = self.cluster()
            host, port = name.rsplit(":", 1)
            node = client.get_node(node_name=name) or ClusterNode(host, int(port))
            connection = client.get_redis_connection(node).connection_pool.make_connection()
            local.connections[name] = connection
            with self._lock:
                self._own_connections.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._own_connections:
                connection.disconnect()
            self._own_connections.clear()
        if self._client is not None:
            self._client.close()

    # --- one round: a pipeline per node, all sent before any reply is read --------------------

    def exchange(
        self, what: str, batches: dict[str, list[tuple[Any, ...]]]
    ) -> dict[str, list[Any]]:
        """Send each node its commands, then read every reply (an error reply is returned,
        not raised). See the module docstring for what a failure does."""
        packed = {name: [self._pack(c) for c in commands] for name, commands in batches.items()}
        replies: dict[str, list[Any]] = {}
        failed: dict[str, BaseException] = {}
        for attempt in range(2):
            failed = {}
            sent = []
            for name in [n for n in packed if n not in replies]:
                connection = self._connection(name)
                try:
                    connection.send_packed_command(packed[name], check_health=False)
                    sent.append((name, connection))
                except self._errors as exc:
                    connection.disconnect()
                    failed[name] = exc
            for name, connection in sent:
                try:
                    replies[name] = self._read(connection, len(packed[name]))
                except self._errors as exc:
                    connection.disconnect()
                    failed[name] = exc
            if not failed:
                return replies
            if attempt or not all(isinstance(e, self._reset) for e in failed.values()):
                break
        self._stale = True
        name, error = next(iter(failed.items()))
        if isinstance(error, self._auth_error):
            raise OnlineStoreUnavailable(
                f"Redis Cluster node {name} ({self.location}) refused the credentials in its "
                f"URL ({what}): {str(error).rstrip('.')}. Put the right password in the URL"
            )
        raise OnlineStoreUnavailable(
            f"Redis Cluster node {name} does not answer ({what}): {str(error).rstrip('.')}. Its "
            f"slots are unavailable until it is back or one of its replicas takes over (cluster "
            f"{self.location})"
        )

    def _read(self, connection: Any, count: int) -> list[Any]:
        replies = []
        for _ in range(count):
            try:
                replies.append(connection.read_response())
            except self._response_error as exc:
                replies.append(exc)
        return replies

    def route(self, what: str, calls: Sequence[Call], written: set[str] | None = None) -> list[Any]:
        """Each call on the master serving its key, in one round, following redirections
        (module docstring); the replies, in order. ``written`` collects the nodes that took
        the calls."""
        client = self.cluster()
        replies: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        asking: dict[int, str] = {}
        for _ in range(ROUNDS):
            by_node: dict[str, list[int]] = {}
            for i in pending:
                by_node.setdefault(asking.get(i) or self.master_of(calls[i][0]), []).append(i)
            batches = {
                node: [c for i in idx for c in (("ASKING",),) * (i in asking) + (calls[i][1],)]
                for node, idx in by_node.items()
            }
            got = self.exchange(what, batches)
            if written is not None:
                written.update(batches)
            pending, pause, load = [], False, set()
            for node, idx in by_node.items():
                answers = iter(got[node])
                for i in idx:
                    if asking.pop(i, None):
                        next(answers)  # ASKING's OK
                    reply = next(answers)
                    if isinstance(reply, self._noscript):
                        load.add(node)
                    elif isinstance(reply, self._moved):
                        client.nodes_manager.move_slot(reply)
                        self._owners = self._masters = None
                    elif isinstance(reply, self._ask):
                        asking[i] = f"{reply.host}:{reply.port}"
                    elif isinstance(reply, self._try_again):
                        pause = True
                    elif isinstance(reply, self._down):
                        raise self._cluster_down(what, node, reply)
                    else:
                        replies[i] = reply
                        continue
                    pending.append(i)
            if not pending:
                return replies
            if load:
                scripts = [("SCRIPT", "LOAD", script) for script in lua.CLUSTER_SCRIPTS]
                self.exchange("load scripts", dict.fromkeys(load, scripts))
            if pause:
                time.sleep(TRYAGAIN_PAUSE)
        self._stale = True
        raise OnlineStoreUnavailable(
            f"Redis Cluster {self.location} still redirected {what} after {ROUNDS} rounds "
            "(slots moving); try again"
        )

    def _cluster_down(self, what: str, node: str, reply: Exception) -> OnlineStoreUnavailable:
        """The error for a CLUSTERDOWN answer, naming the masters that node sees failing."""
        self._stale = True
        failing = []
        try:
            text = self.exchange(what, {node: [("CLUSTER", "NODES")]})[node][0]
            for line in text.decode().splitlines():
                fields = line.split()
                if "master" in fields[2] and "fail" in fields[2]:
                    failing.append(fields[1].split("@")[0])
        except (OnlineStoreError, AttributeError, IndexError):
            pass
        seen = f"; masters it sees failing: {', '.join(failing)}" if failing else ""
        return OnlineStoreUnavailable(
            f"Redis Cluster node {node} refused to {what}: {reply}{seen}. The cluster serves no "
            f"request until every slot has a master again (a replica takes over within about "
            f"its cluster-node-timeout); cluster {self.location}"
        )

    def keyed(
        self,
        what: str,
        sha: str,
        jobs: Sequence[Job],
        size: int,
        extra: Sequence[Call] = (),
        written: set[str] | None = None,
    ) -> tuple[Done, list[Any]]:
        """Run script ``sha`` over each job's keys: one call per master and ``size`` keys,
        all jobs and the ``extra`` calls in one round (module docstring). Returns per job
        its (key positions, reply) pairs, and the replies of ``extra``."""
        from redis.crc import key_slot

        self.cluster()
        owners = self._slot_owners()
        chunks: list[tuple[int, list[int]]] = []
        for j, (keys, _, _) in enumerate(jobs):
            names = [owners[key_slot(key)] for key in keys]
            order = sorted(range(len(names)), key=names.__getitem__)  # grouped by master, in C
            for _, group in itertools.groupby(order, key=names.__getitem__):
                positions = list(group)
                chunks += [(j, positions[s : s + size]) for s in range(0, len(positions), size)]
        calls = [*extra, *(_keyed_call(sha, jobs[j], chunk) for j, chunk in chunks)]
        replies = self.route(what, calls, written)
        done: Done = [[] for _ in jobs]
        again: list[tuple[int, list[int]]] = []
        for (j, chunk), reply in zip(chunks, replies[len(extra) :], strict=True):
            if isinstance(reply, self._response_error) and NON_LOCAL in str(reply):
                self._stale = True
                again += [(j, [i]) for i in chunk]
            else:
                done[j].append((chunk, self.checked(what, reply)))
        if again:
            calls = [_keyed_call(sha, jobs[j], chunk) for j, chunk in again]
            for (j, chunk), reply in zip(again, self.route(what, calls, written), strict=True):
                done[j].append((chunk, self.checked(what, reply)))
        return done, replies[: len(extra)]

    def checked(self, what: str, reply: Any) -> Any:
        """``reply``, unless it is an error reply: then an ``OnlineStoreError`` saying so."""
        if isinstance(reply, Exception):
            raise OnlineStoreError(f"Redis Cluster {self.location} refused to {what}: {reply}")
        return reply

    def replicated(self, what: str, nodes: set[str]) -> None:
        """Wait until every replica the cluster lists for each of ``nodes`` (masters this
        thread wrote to) acknowledged those writes, for half of ``socket_timeout``; raise
        when one did not, or when one of ``nodes`` is no longer a master (a failover)."""
        if not nodes:
            return
        counts = self.masters()
        gone = sorted(n for n in nodes if n not in counts)
        if gone:
            self._stale = True
            raise OnlineStoreUnavailable(
                f"Redis Cluster node {gone[0]} took writes ({what}) and is no longer a master "
                "(a failover): they may be lost. Run again"
            )
        wait_ms = max(1, int(self.socket_timeout * 500))
        waits = {n: [("WAIT", counts[n], wait_ms)] for n in sorted(nodes) if counts[n]}
        for node, (acked,) in self.exchange(what, waits).items():
            if isinstance(acked, Exception) or acked < counts[node]:
                self._stale = True  # a replica may have failed: the next try reads the map again
                raise OnlineStoreError(
                    f"{acked} of the {counts[node]} replicas of Redis Cluster node {node} "
                    f"acknowledged the writes within {wait_ms / 1000:g} s ({what}): a failover "
                    "now could lose them, so this step is refused. Run again when its replicas "
                    "are back in sync (or were removed from the cluster)"
                )


def _keyed_call(sha: str, job: Job, chunk: list[int]) -> Call:
    """The script call for ``chunk`` (positions in the job's keys): its first key declared
    (it routes the call), the others and the per-key arguments after the job's arguments."""
    keys, head, per_key = job
    first = keys[chunk[0]]
    rest = [keys[i] for i in chunk[1:]]
    values = [per_key[i] for i in chunk] if per_key is not None else []
    return first, ("EVALSHA", sha, 1, first, len(rest), *rest, *head, *values)
