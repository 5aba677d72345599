"""The Redis online store: one hash per (project, entity key), one short field per view.

Layout::

    <project>|<entity key>   HASH   <generation> -> codec row (event_ts, created_ts, values)
    <project>#meta           HASH   view:<view> -> "<fingerprint>:<layout id>:<generation>"
                                    watermark:<view> -> "<end µs>:<max created µs or empty>"
                                    next_tag -> the last generation given
                                    epoch -> random, set by the first claim (below)
                                    retired:<generation> -> a dropped view whose rows may remain

e.g. ``fraud|user_id=i1001`` holds fields ``1`` (user_stats) and ``2`` (user_risk); a view
keyed by two entities lives in the hash of their combined key
(``fraud|merchant=s5:m_001|user_id=i7``). A row's field name is its view's *generation*
(featurestore/online/base.py): a number ``claim`` takes from the ``next_tag`` counter when the
store starts holding the view's data for one (fingerprint, layout id), never given twice (the
counter kept its name from before generations, so a generation never equals a tag an earlier
version wrote), and recorded in ``view:<view>`` with that identity. So every row's field name
identifies the exact definition and layout it was written with. Why:

- **One round trip per request.** A read of N entities x several views is one EVALSHA of
  a read-only Lua script: one HMGET of the views' ``view:`` entries, then one HMGET per
  distinct hash (all views of an entity in one call); a request whose views use different
  entities sends both sets of keys in the same call. The script also says, per view, whether
  its generation stands for the identity asked: rows of another one are refused (absent,
  counted). (Pipelining N HMGETs costs more Python per command than the whole server work.)
- **Little memory.** A view's features are one compact binary field (codec.py) under a
  one- or two-byte generation, not one field per feature plus a ``_ts:<view>`` field as in
  Feast; small hashes stay in Redis' listpack encoding. Quickstart-shaped data (6 features
  in 2 views, 10k drivers; benchmarks/bench_online_sdk.py, ``INFO memory`` delta per driver):
  208 bytes here (of which 3 are these scripts' fixed ~50 KB spread over the 10k drivers;
  235 with the view names as field names), 306 for Feast's layout on the same data
  (FEAST_NOTES.md: ~264 on its data). Most of what is left is Redis' own per-key overhead.
  A row longer than the server's ``hash-max-listpack-value`` (64 bytes by default: ~5
  numeric features per view) turns that hash into a real hash table, ~100 bytes more per
  entity; raise that setting for wide views.
- **Never regress, only for the current generation, atomically.** Writes go through a Lua
  script (featurestore/online/redis_scripts.py: registered once, called by SHA, re-loaded
  after a NOSCRIPT from a restarted server) that first checks that ``view:<view>`` still
  holds the run's claim (else it writes nothing and the run fails), then per key compares
  the stored row's 16-byte (event, created) prefix with the new one and writes only when the
  new one is >= — batches of keys per call, several calls per pipeline. Claims and
  watermarks are scripts on the meta hash alone: a watermark is set only while the claim is
  current. A claim also holds the meta hash's ``epoch`` (random, set by the first claim on an
  empty meta hash) and is current only while it is unchanged: a server restarted empty gives
  generations from 1 again, and a run that claimed before the restart must not pass for a
  new claim of the same number (its rows written before the restart are gone, so its
  watermark must not move).
- **Dropping a view** (or a claim replacing data of another definition) is one script that
  retires its generation and removes its ``view:`` entry and watermark: from then on its rows
  are invisible, writes of a run that claimed it are refused, and a new claim gets a new
  generation, even if what follows is interrupted. The rows themselves are then deleted by a
  cursor SCAN over ``<project>|*`` (COUNT 1000 per step, so the server never blocks) with one
  pipelined HDEL per key found: one pass over the project's keys — O(keys) server work and
  ~2 round trips per 1,000 keys — whatever the view's size. Hashes left empty disappear by
  themselves; rows an interrupted drop left behind go with the next drop or claim.
- **Data from before generations** (meta ``tag:<view>``, rows without a layout id) is never
  decoded: a read raises an error saying to materialize again; a claim or drop retires it.

Reads come in two transports over the same scripts, replies and refusals: ``read`` and
``read_tiles`` on one connection per thread (per process: a forked child makes its own), and
``read_async`` and ``read_tiles_async`` for an event loop (the prediction service) on a
redis.asyncio pool of at most ``ASYNC_CONNECTIONS`` per process and loop, a free connection
waited for within the timeout; several script calls go in one pipeline either way.

Timeouts are always set (``socket_timeout``, also used to connect). A failed call is retried
once, at once, only when the connection was reset or refused (a restarted server; every
command here is idempotent), never after a timeout: an unreachable or silent server raises
``OnlineStoreUnavailable`` naming the URL (password masked) after one ``socket_timeout``.
Needs Redis 7 (script flags).

Redis Cluster is the same layout with other plumbing: ``RedisClusterOnlineStore``
(featurestore/online/redis_cluster.py). What both share (claims, drops and watermarks on the
meta hash, encoding, refusals, error messages) is ``RedisStoreBase``
(featurestore/online/redis_base.py); their Lua scripts are featurestore/online/redis_scripts.py.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from featurestore.errors import ConfigError, OnlineStoreError
from featurestore.online import redis_scripts as lua
from featurestore.online import redis_tiles
from featurestore.online.base import Claim, KeyGroup, TileAnswer, TileId, TileRead, changed_under
from featurestore.online.redis_base import (
    CALLS_PER_PIPELINE,
    READ_BATCH,
    RETIRED,
    SCAN_COUNT,
    WRITE_BATCH,
    ReadParts,
    RedisStoreBase,
    claim_check,
    held,
    mask_url,
    parse_watermarks,
    watermark_fields,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.definitions import Field
    from featurestore.online.base import Watermark

__all__ = ["RedisOnlineStore", "mask_url"]

ASYNC_CONNECTIONS = 8  # per process and event loop: concurrent async reads share these
_ReadCall = tuple[list[str], list[Any], ReadParts]


class RedisOnlineStore(RedisStoreBase):
    """The production online store on one Redis server (layout, costs and guarantees:
    module docstring)."""

    def __init__(self, url: str, project: str, *, socket_timeout: float = 5.0) -> None:
        import hiredis
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        super().__init__(url, project, socket_timeout)
        self._url = url
        self._async_clients: dict[tuple[int, int], Any] = {}
        self._pack = hiredis.pack_command
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(self._reset,)),
            )
        except ValueError as exc:
            raise OnlineStoreError(f"invalid Redis URL {self.location}: {exc}") from None
        self._write_sha, self._read_sha = lua.WRITE_SHA, lua.READ_SHA

    # --- plumbing ------------------------------------------------------------------------

    def _load_scripts(self) -> None:
        for script in lua.SINGLE_SERVER_SCRIPTS:
            self._client.script_load(script)

    # what featurestore/online/redis_tiles.py uses
    def hash_key(self, entity_key: str) -> str:
        """The Redis key of an entity key's hash."""
        return self._prefix + entity_key

    @property
    def meta_key(self) -> str:
        return self._meta

    @property
    def client(self) -> Any:
        return self._client

    def run_scripts(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Script calls in one round trip, connection failures as OnlineStoreUnavailable."""
        return self._call("run a script", lambda: self._scripts(commands))

    def count_refused(self, view: str, rows: int) -> None:
        self._count_refused(view, rows)

    def _scripts(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Script calls (EVALSHA ...) in one round trip; their replies, in order.

        Calls that meet NOSCRIPT (a new or restarted server) are sent again once the scripts
        are registered; any other error reply is raised.
        """
        replies = self._pipeline(commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, self._noscript)]
        if missing:
            self._load_scripts()
            for i, reply in zip(
                missing, self._pipeline([commands[i] for i in missing]), strict=True
            ):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _script(self, what: str, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        command = ("EVALSHA", sha, len(keys), *keys, *args)
        return self._call(what, lambda: self._scripts([command]))[0]

    def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send commands packed by hiredis in C on this thread's connection, read every reply
        (an error reply is returned, not raised): a fraction of the Python redis-py's own
        pipeline spends per argument. A connection found broken (e.g. the server restarted)
        is dropped and everything sent once more: every command here is idempotent (a write
        rewrites rows the never-regress rule lets through, and its claim check repeats). A
        timeout is not retried.
        """
        packed = [self._pack(command) for command in commands]
        try:
            return self._send(packed)
        except self._reset:
            return self._send(packed)

    def _send(self, packed: list[bytes]) -> list[Any]:
        connection = self._connection()
        try:
            connection.send_packed_command(packed, check_health=False)
            replies = []
            for _ in packed:
                try:
                    replies.append(connection.read_response())
                except self._response_error as exc:
                    replies.append(exc)
            return replies
        except self._errors:
            connection.disconnect()  # the next command reconnects
            raise

    def _connection(self) -> Any:
        """This thread's own connection (made by the pool, with its settings): taking one
        from the pool and giving it back costs as much CPU as a whole small read."""
        connection = getattr(self._local, "connection", None)
        if connection is None or self._local.pid != os.getpid():
            connection = self._client.connection_pool.make_connection()
            self._local.connection, self._local.pid = connection, os.getpid()
            with self._lock:
                self._own_connections.append(connection)
        return connection

    def _meta_field(self, what: str, field: str) -> bytes | None:
        # Any: redis-py types replies as str, but this client does not decode them
        raw: Any = self._call(what, lambda: self._client.hget(self._meta, field))
        return raw

    def _meta_fields(self, what: str, fields: Sequence[str]) -> list[bytes | None]:
        raw: Any = self._call(what, lambda: self._client.hmget(self._meta, fields))
        return list(raw)

    async def get_watermarks_async(self, views: Sequence[str]) -> dict[str, Watermark | None]:
        """``get_watermarks`` over redis.asyncio (``read_async``'s client): one HMGET."""
        if not views:
            return {}
        fields = watermark_fields(views)
        try:
            raws = await self._async_client().execute_command("HMGET", self._meta, *fields)
        except self._failures as exc:
            raise self._translate("read watermarks", exc) from None
        return parse_watermarks(views, raws)

    # --- the interface -------------------------------------------------------------------

    def ping(self) -> None:
        """PING, and refuse a Redis Cluster node: this client would get MOVED for most keys."""
        self._call("answer PING", self._client.ping)
        try:
            info: Any = self._client.info("cluster")
        except self._response_error:  # INFO disabled (a managed service): nothing to check
            return
        except self._errors:
            info = {}
        if info.get("cluster_enabled"):
            raise ConfigError(
                f"online_store.url (or FEATURESTORE_REDIS_URL) {self.location} is a node of a "
                "Redis Cluster: add 'cluster: true' to online_store in featurestore.yaml"
            )

    def write_rows(
        self,
        claim: Claim,
        batch: pa.RecordBatch,
        join_keys: Sequence[str],
        features: Sequence[Field],
    ) -> int:
        keys, rows = self._encode(claim, batch, join_keys, features)
        head = (f"view:{claim.identity.view}", claim_check(claim), claim.generation)
        calls = [
            (keys[i : i + WRITE_BATCH], rows[i : i + WRITE_BATCH])
            for i in range(0, len(keys), WRITE_BATCH)
        ]
        written = 0
        for start in range(0, len(calls), CALLS_PER_PIPELINE):
            commands = [
                ("EVALSHA", self._write_sha, len(call_keys) + 1, self._meta, *call_keys, *head,
                 *call_rows)
                for call_keys, call_rows in calls[start : start + CALLS_PER_PIPELINE]
            ]  # fmt: skip
            replies = self._call("write rows", functools.partial(self._scripts, commands))
            if min(replies) < 0:
                raise changed_under(claim, self._holds(claim.identity.view), self.location)
            written += sum(replies)
        return written

    def read(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        calls, commands = self._read_calls(groups)
        if not commands:
            return []
        replies = self._call("read rows", lambda: self._scripts(commands))
        return self._read_rows(calls, replies)

    def read_tiles(
        self, groups: Sequence[KeyGroup], tile_reads: Sequence[TileRead]
    ) -> tuple[list[list[bytes | None]], list[TileAnswer]]:
        calls, commands = self._tile_read_calls(groups, tile_reads)
        replies = self._call("read rows", lambda: self._scripts(commands))
        return self._tile_read_replies(calls, tile_reads, replies)

    async def read_tiles_async(
        self, groups: Sequence[KeyGroup], tile_reads: Sequence[TileRead]
    ) -> tuple[list[list[bytes | None]], list[TileAnswer]]:
        """``read_tiles`` over redis.asyncio (``read_async``'s client): the same script
        calls in one pipeline, parsed by the same code, without blocking the loop."""
        calls, commands = self._tile_read_calls(groups, tile_reads)
        try:
            replies = await self._async_scripts(self._async_client(), commands)
        except self._failures as exc:
            raise self._translate("read rows", exc) from None
        return self._tile_read_replies(calls, tile_reads, replies)

    def _tile_read_calls(
        self, groups: Sequence[KeyGroup], tile_reads: Sequence[TileRead]
    ) -> tuple[list[_ReadCall], list[tuple[Any, ...]]]:
        """The plain views' read script calls, then one tile read script call per view."""
        calls, commands = self._read_calls(groups)
        return calls, commands + [redis_tiles.read_commands(self, r) for r in tile_reads]

    def _tile_read_replies(
        self, calls: list[_ReadCall], tile_reads: Sequence[TileRead], replies: list[Any]
    ) -> tuple[list[list[bytes | None]], list[TileAnswer]]:
        """``_tile_read_calls``' replies as ``read_tiles`` returns them."""
        split = len(calls)
        rows = self._read_rows(calls, replies[:split]) if calls else []
        answers = [
            redis_tiles.parse_read(self, request, reply)
            for request, reply in zip(tile_reads, replies[split:], strict=True)
        ]
        return rows, answers

    def write_tiles(
        self,
        claim: Claim,
        entity_keys: Sequence[str],
        tiles: Sequence[Sequence[tuple[TileId, bytes]]],
    ) -> int:
        head = (f"view:{claim.identity.view}", claim_check(claim), claim.generation)
        commands = redis_tiles.write_tiles(self, claim, entity_keys, tiles, head)
        written = 0
        for start in range(0, len(commands), CALLS_PER_PIPELINE):
            batch = commands[start : start + CALLS_PER_PIPELINE]
            replies = self._call("write tiles", functools.partial(self._scripts, batch))
            if min(replies) < 0:
                raise changed_under(claim, self._holds(claim.identity.view), self.location)
            written += sum(replies)
        return written

    def remove_tiles(self, claim: Claim, keep_from: Sequence[TileId]) -> int:
        return self._call("remove old tiles", lambda: redis_tiles.sweep(self, claim, keep_from))

    async def read_async(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        """``read`` over redis.asyncio on the running loop's own client: the same script
        calls, replies and refusals, without blocking the loop while the server answers."""
        calls, commands = self._read_calls(groups)
        if not commands:
            return []
        try:
            replies = await self._async_scripts(self._async_client(), commands)
        except self._failures as exc:
            raise self._translate("read rows", exc) from None
        return self._read_rows(calls, replies)

    async def _async_scripts(self, client: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        """``_scripts`` over redis.asyncio: script calls in one round trip (one command, or a
        pipeline of several), those that meet NOSCRIPT sent again once the scripts are
        registered; any other error reply is raised."""
        replies = await self._async_send(client, commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, self._noscript)]
        if missing:
            for script in lua.SINGLE_SERVER_SCRIPTS:
                await client.script_load(script)
            again = await self._async_send(client, [commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _async_send(self, client: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Every command's reply, an error reply returned, not raised."""
        if len(commands) == 1:  # a pipeline object costs more Python than the call itself
            try:
                return [await client.execute_command(*commands[0])]
            except self._response_error as exc:
                return [exc]
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    def _async_client(self) -> Any:
        """This process's and event loop's redis.asyncio client (the sync one's settings)."""
        import asyncio

        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        key = (os.getpid(), id(asyncio.get_running_loop()))
        client = self._async_clients.get(key)
        if client is None:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self._url,
                max_connections=ASYNC_CONNECTIONS,
                timeout=self.socket_timeout,  # waiting for a free connection counts as not answering
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_timeout,
            )
            retry = Retry(NoBackoff(), 1, supported_errors=(self._reset,))
            client = self._async_clients[key] = redis.asyncio.Redis(
                connection_pool=pool, retry=retry
            )
        return client

    async def close_async(self) -> None:
        mine = [c for (pid, _), c in self._async_clients.items() if pid == os.getpid()]
        self._async_clients.clear()
        for client in mine:
            await client.aclose()
        self.close()

    def _read_calls(
        self, groups: Sequence[KeyGroup]
    ) -> tuple[list[_ReadCall], list[tuple[Any, ...]]]:
        """The read script calls for ``groups`` (several when a request holds many keys)."""
        # per script call: its keys, its arguments, and the (key count, views) of its groups
        calls: list[_ReadCall] = [([], [], [])]
        prefix = self._prefix
        for views, entity_keys_ in groups:
            asked = [a for v in views for a in (f"view:{v.view}", held(v))]
            for start in range(0, len(entity_keys_), READ_BATCH):
                chunk = entity_keys_[start : start + READ_BATCH]
                keys, args, parts = calls[-1]
                if len(keys) + len(chunk) > READ_BATCH:
                    keys, args, parts = [], [], []
                    calls.append((keys, args, parts))
                keys += [prefix + k for k in chunk]
                args += [len(chunk), len(views), *asked]
                parts.append((len(chunk), views))
        calls = [c for c in calls if c[0]]
        commands = [
            ("EVALSHA", self._read_sha, len(k) + 1, self._meta, *k, *a) for k, a, _ in calls
        ]
        return calls, commands

    def _read_rows(self, calls: list[_ReadCall], replies: list[Any]) -> list[list[bytes | None]]:
        """The rows of the read scripts' replies, other identities' rows refused."""
        out: list[list[bytes | None]] = []
        for (_, _, parts), reply in zip(calls, replies, strict=True):
            statuses, rows = reply[0], reply[1:]
            if statuses.strip(b".n"):  # some view holds another identity's data, or old data
                self._refuse(statuses.decode(), rows, parts)
            out += rows
        return out

    def _collect_retired(self) -> int:
        """Delete the rows of every retired generation: one SCAN over the project's keys.

        Retired generations are invisible to reads and refused to writes, so collecting them
        can take its time, and be interrupted: the next drop or claim collects what is left.
        """
        fields: list[bytes] = self._client.hkeys(self._meta)  # type: ignore[assignment]  # bytes: replies are not decoded
        markers = [f for f in fields if f.startswith(RETIRED.encode())]
        retired = [m[len(RETIRED) :] for m in markers]
        removed = 0
        cursor = 0
        while retired:
            cursor, keys = self._client.scan(cursor, match=f"{self._prefix}*", count=SCAN_COUNT)
            if keys:
                pipe = self._client.pipeline(transaction=False)
                for key in keys:
                    pipe.hdel(key, *retired)
                removed += sum(pipe.execute())
                removed += redis_tiles.collect(self, keys, retired)
            if cursor == 0:
                self._client.hdel(self._meta, *markers)
                break
        return removed

    def close(self) -> None:
        with self._lock:
            for connection in self._own_connections:
                connection.disconnect()
            self._own_connections.clear()
        self._client.close()
