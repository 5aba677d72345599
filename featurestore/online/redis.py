"""The Redis online store: one hash per (project, entity key), one short field per view.

Layout::

    <project>|<entity key>   HASH   <view's tag> -> codec row (event_ts, created_ts, values)
    <project>#meta           HASH   tag:<view> -> the view's tag ("1", "2", ...)
                                    next_tag -> the last tag given
                                    retired:<tag> -> a dropped view whose rows may remain
                                    watermark:<view> -> "<end µs>:<max created µs or empty>"

e.g. ``fraud|user_id=i1001`` holds fields ``1`` (user_stats) and ``2`` (user_risk); a view
keyed by two entities lives in the hash of their combined key
(``fraud|merchant=s5:m_001|user_id=i7``). A view's tag is assigned atomically by its first
write and resolved inside every script call, so no client caches it. Why:

- **One round trip per request.** A read of N entities x several views is one EVALSHA of
  a read-only Lua script: one HMGET of the views' tags, then one HMGET per distinct hash
  (all views of an entity in one call); a request whose views use different entities
  sends both sets of keys in the same call. (Pipelining N HMGETs costs more Python per
  command than the whole server work.)
- **Little memory.** A view's features are one compact binary field (codec.py) under a
  one- or two-byte tag, not one field per feature plus a ``_ts:<view>`` field as in Feast;
  small hashes stay in Redis' listpack encoding. Quickstart-shaped data (6 features in 2
  views, 10k drivers; benchmarks/bench_online_sdk.py, ``INFO memory`` delta per driver):
  205 bytes here (235 with the view names as field names), 306 for Feast's layout on the
  same data (FEAST_NOTES.md: ~264 on its data). Most of what is left is Redis' own per-key
  overhead. A row longer than the server's ``hash-max-listpack-value`` (64 bytes by
  default: ~5 numeric features per view) turns that hash into a real hash table, ~100
  bytes more per entity; raise that setting for wide views.
- **Never regress, atomically.** Writes go through a Lua script (registered once, called
  by SHA, re-loaded after a NOSCRIPT from a restarted server) that, per key, compares the
  stored row's 16-byte (event, created) prefix with the new one and writes only when the
  new one is >= — batches of keys per call, several calls per pipeline.
- **Dropping a view** is one transaction that retires its tag and removes its watermark:
  from then on its rows are invisible and a new write gets a new tag, even if what follows
  is interrupted. The rows themselves are then deleted by a cursor SCAN over
  ``<project>|*`` (COUNT 1000 per step, so the server never blocks) with one pipelined HDEL
  per key found: one pass over the project's keys — O(keys) server work and ~2 round
  trips per 1,000 keys — whatever the view's size. Hashes left empty disappear by
  themselves; rows an interrupted drop left behind go with the next drop.

Timeouts are always set (``socket_timeout``, also used to connect), with one immediate
retry (a connection broken by a server restart reconnects once): an unreachable server
raises ``OnlineStoreUnavailable`` naming the URL (password masked), never hangs. Needs
Redis 7 (script flags). Not supported: Redis Cluster (a script's keys would have to share
a slot).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from featurestore.errors import OnlineStoreError, OnlineStoreUnavailable
from featurestore.online.base import KeyGroup, OnlineStore, Watermark
from featurestore.online.codec import RowCodec, entity_keys, from_us, timestamp_us

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.definitions import Field

T = TypeVar("T")

WRITE_BATCH = 1_000  # keys per script call
CALLS_PER_PIPELINE = 8  # script calls per round trip
READ_BATCH = 2_000  # keys per read script call: bigger reads pipeline several calls
SCAN_COUNT = 1_000
RETIRED = "retired:"  # in the meta hash: the tag of a dropped view whose rows may remain

# KEYS[1]: the project's meta hash; KEYS[i + 1]: hashes; ARGV[1]: "tag:<view>"; ARGV[i + 1]:
# the row for KEYS[i + 1]. The view's tag (its field name) is looked up, or assigned once from a
# counter. A row is written unless the stored one's 16-byte (event, created) prefix is
# greater, compared as four big-endian uint32 (exact in Lua's doubles; string '<' would
# follow the server's locale).
WRITE_SCRIPT = """
local field = redis.call('HGET', KEYS[1], ARGV[1])
if not field then
  field = tostring(redis.call('HINCRBY', KEYS[1], 'next_tag', 1))
  redis.call('HSET', KEYS[1], ARGV[1], field)
end
local written = 0
local unpack = struct.unpack
for i = 2, #KEYS do
  local key, new = KEYS[i], ARGV[i]
  local old = redis.call('HGET', key, field)
  local newer = true
  if old then
    local a1, a2, a3, a4 = unpack('>I4I4I4I4', new)
    local b1, b2, b3, b4 = unpack('>I4I4I4I4', old)
    if a1 ~= b1 then newer = a1 > b1
    elseif a2 ~= b2 then newer = a2 > b2
    elseif a3 ~= b3 then newer = a3 > b3
    else newer = a4 >= b4 end
  end
  if newer then
    redis.call('HSET', key, field, new)
    written = written + 1
  end
end
return written
"""

# KEYS[1]: the project's meta hash; KEYS[2..]: the groups' hashes, in order. ARGV: for each
# group, its key count, its view count, then "tag:<view>" for each view. A view never written has no tag and
# reads as absent (the empty field name is never a tag). Returns one HMGET reply per hash.
READ_SCRIPT = """#!lua flags=no-writes
local out, k, a = {}, 2, 1
while a <= #ARGV do
  local nkeys, nviews = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local fields = redis.call('HMGET', KEYS[1], unpack(ARGV, a + 2, a + 1 + nviews))
  for i = 1, nviews do
    fields[i] = fields[i] or ''
  end
  a = a + 2 + nviews
  for _ = 1, nkeys do
    out[k - 1] = redis.call('HMGET', KEYS[k], unpack(fields))
    k = k + 1
  end
end
return out
"""


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisOnlineStore(OnlineStore):
    """The production online store (layout, costs and guarantees: module docstring)."""

    def __init__(self, url: str, project: str, *, socket_timeout: float = 5.0) -> None:
        import hiredis
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.location = mask_url(url)
        self.project = project
        self._prefix = f"{project}|"
        self._meta = f"{project}#meta"
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        self._noscript = redis.exceptions.NoScriptError
        self._response_error = redis.exceptions.ResponseError
        self._auth_error = redis.exceptions.AuthenticationError
        self._pack = hiredis.pack_command
        self._local = threading.local()
        self._lock = threading.Lock()
        self._own_connections: list[Any] = []
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise OnlineStoreError(f"invalid Redis URL {self.location}: {exc}") from None
        self._write_sha = self._sha(WRITE_SCRIPT)
        self._read_sha = self._sha(READ_SCRIPT)

    def __repr__(self) -> str:
        return f"RedisOnlineStore({self.location!r}, project={self.project!r})"

    # --- plumbing ------------------------------------------------------------------------

    @staticmethod
    def _sha(script: str) -> str:
        import hashlib

        return hashlib.sha1(script.encode()).hexdigest()

    def _call(self, what: str, func: Callable[[], T]) -> T:
        """Run ``func``, turning connection failures into OnlineStoreUnavailable."""
        try:
            return func()
        except self._auth_error as exc:
            raise OnlineStoreUnavailable(
                f"Redis at {self.location} refused the credentials in its URL ({what}): "
                f"{str(exc).rstrip('.')}. Put the right password in the URL: "
                "redis://:PASSWORD@host:port/db"
            ) from None
        except self._errors as exc:
            raise OnlineStoreUnavailable(
                f"Redis at {self.location} does not answer ({what}): {str(exc).rstrip('.')}. "
                "Is the server running, and the URL (featurestore.yaml or "
                "FEATURESTORE_REDIS_URL) right?"
            ) from None
        except self._response_error as exc:
            raise OnlineStoreError(f"Redis at {self.location} refused to {what}: {exc}") from None

    def _load_scripts(self) -> None:
        self._client.script_load(WRITE_SCRIPT)
        self._client.script_load(READ_SCRIPT)

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

    def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send commands packed by hiredis in C on this thread's connection, read every reply
        (an error reply is returned, not raised): a fraction of the Python redis-py's own
        pipeline spends per argument. A connection found broken (e.g. the server restarted)
        is dropped and everything sent once more: every command here is idempotent.
        """
        packed = [self._pack(command) for command in commands]
        try:
            return self._send(packed)
        except self._errors:
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

    # --- the interface -------------------------------------------------------------------

    def ping(self) -> None:
        self._call("answer PING", self._client.ping)

    def write_rows(
        self, view: str, batch: pa.RecordBatch, join_keys: Sequence[str], features: Sequence[Field]
    ) -> int:
        if batch.num_rows == 0:
            return 0
        keys = [self._prefix + k for k in entity_keys(batch, join_keys)]
        rows = RowCodec(features).encode_batch(batch)
        calls = [
            (keys[i : i + WRITE_BATCH], rows[i : i + WRITE_BATCH])
            for i in range(0, len(keys), WRITE_BATCH)
        ]
        written = 0
        for start in range(0, len(calls), CALLS_PER_PIPELINE):
            commands = [
                (
                    "EVALSHA",
                    self._write_sha,
                    len(call_keys) + 1,
                    self._meta,
                    *call_keys,
                    f"tag:{view}",
                    *call_rows,
                )
                for call_keys, call_rows in calls[start : start + CALLS_PER_PIPELINE]
            ]
            replies = self._call("write rows", lambda commands=commands: self._scripts(commands))
            written += sum(replies)
        return written

    def read(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        calls: list[tuple[list[str], list[Any]]] = [([], [])]
        prefix = self._prefix
        for views, entity_keys_ in groups:
            for start in range(0, len(entity_keys_), READ_BATCH):
                chunk = entity_keys_[start : start + READ_BATCH]
                keys, args = calls[-1]
                if len(keys) + len(chunk) > READ_BATCH:
                    keys, args = [], []
                    calls.append((keys, args))
                keys += [prefix + k for k in chunk]
                args += [len(chunk), len(views), *(f"tag:{v}" for v in views)]
        commands = [
            ("EVALSHA", self._read_sha, len(k) + 1, self._meta, *k, *a) for k, a in calls if k
        ]
        if not commands:
            return []
        replies = self._call("read rows", lambda: self._scripts(commands))
        return replies[0] if len(replies) == 1 else [row for reply in replies for row in reply]

    def get_watermark(self, view: str) -> Watermark | None:
        raw = self._call(
            "read a watermark", lambda: self._client.hget(self._meta, f"watermark:{view}")
        )
        if raw is None:
            return None
        end, created = raw.decode().split(":")
        return Watermark(from_us(int(end)), from_us(int(created)) if created else None)

    def set_watermark(self, view: str, watermark: Watermark) -> None:
        created = "" if watermark.max_created is None else timestamp_us(watermark.max_created)
        value = f"{timestamp_us(watermark.end)}:{created}"
        self._call(
            "write a watermark",
            lambda: self._client.hset(self._meta, f"watermark:{view}", value),
        )

    def drop_view(self, view: str) -> int:
        return self._call("drop a view", lambda: self._drop(view))

    def _drop(self, view: str) -> int:
        """Retire the view's tag and its watermark in one transaction, then collect garbage.

        Once the tag is retired the view's rows are invisible to reads and irrelevant to
        writes (the next write gets a new tag), so an interrupted drop is still a drop; the
        retired rows are deleted by this call or the next one.
        """
        tag = self._client.hget(self._meta, f"tag:{view}")
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._meta, f"watermark:{view}")
            if tag is not None:
                pipe.hset(self._meta, f"{RETIRED}{tag.decode()}", view)
                pipe.hdel(self._meta, f"tag:{view}")
            pipe.execute()
        markers = [f for f in self._client.hkeys(self._meta) if f.startswith(RETIRED.encode())]
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
