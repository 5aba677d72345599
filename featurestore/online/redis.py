"""The Redis online store: one hash per (project, entity key), one short field per view.

Layout::

    <project>|<entity key>   HASH   <generation> -> codec row (event_ts, created_ts, values)
    <project>#meta           HASH   view:<view> -> "<fingerprint>:<layout id>:<generation>"
                                    watermark:<view> -> "<end µs>:<max created µs or empty>"
                                    next_tag -> the last generation given
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
  script (registered once, called by SHA, re-loaded after a NOSCRIPT from a restarted
  server) that first checks that ``view:<view>`` still holds the run's claim (else it writes
  nothing and the run fails), then per key compares the stored row's 16-byte (event,
  created) prefix with the new one and writes only when the new one is >= — batches of
  keys per call, several calls per pipeline. Claims and watermarks are scripts on the meta
  hash alone: a watermark is set only while the claim is current.
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

Reads come in two transports over the same script, replies and refusals: ``read`` on one
connection per thread (per process: a forked child makes its own), and ``read_async`` for an
event loop (the prediction service) on a redis.asyncio pool of at most ``ASYNC_CONNECTIONS``
per process and loop, a free connection waited for within the timeout.

Timeouts are always set (``socket_timeout``, also used to connect). A failed call is retried
once, at once, only when the connection was reset or refused (a restarted server; every
command here is idempotent), never after a timeout: an unreachable or silent server raises
``OnlineStoreUnavailable`` naming the URL (password masked) after one ``socket_timeout``.
Needs Redis 7 (script flags).

On Redis Cluster (not supported yet): a script may only touch keys of one slot. Claims, drops
and watermarks touch only the meta hash and stay atomic. The write's check reads the meta hash
beside the data hashes, which a cluster refuses (CROSSSLOT); there a write would carry its
generation alone, so a run that outlived an ``apply`` writes only under its dead generation,
which no read asks for (reads resolve ``view:<view>`` in the meta hash's slot first: one more
round trip, or a cache refreshed when the registry changes), and would see the change by
re-reading ``view:<view>`` after each batch, then fail with its watermark refused. Rows written under a
generation after its drop collected it would need their own collection pass (e.g. deleting
every field that is no view's current generation). Aggregation tiles can live in the same
hashes under fields prefixed by their view's generation.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from featurestore.errors import OnlineStoreError, OnlineStoreUnavailable
from featurestore.online.base import (
    Claim,
    KeyGroup,
    OnlineStore,
    ViewIdentity,
    Watermark,
    changed_under,
    written_before_layouts,
)
from featurestore.online.codec import RowCodec, entity_keys, from_us, timestamp_us

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.definitions import Field

T = TypeVar("T")

WRITE_BATCH = 1_000  # keys per script call
CALLS_PER_PIPELINE = 8  # script calls per round trip
READ_BATCH = 2_000  # keys per read script call: bigger reads pipeline several calls
SCAN_COUNT = 1_000
ASYNC_CONNECTIONS = 8  # per process and event loop: concurrent async reads share these
RETIRED = "retired:"  # in the meta hash: a dropped generation whose rows may remain

# KEYS[1]: the project's meta hash; KEYS[i + 1]: hashes; ARGV[1]: "view:<view>"; ARGV[2]: the
# run's claim as view:<view> holds it; ARGV[3]: its generation (the field); ARGV[i + 3]: the
# row for KEYS[i + 1]. Nothing is written (-1) unless the claim is still the view's. A row is
# written unless the stored one's 16-byte (event, created) prefix is greater, compared as four
# big-endian uint32 (exact in Lua's doubles; string '<' would follow the server's locale).
WRITE_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return -1
end
local field = ARGV[3]
local written = 0
local unpack = struct.unpack
for i = 2, #KEYS do
  local key, new = KEYS[i], ARGV[i + 2]
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
# group, its key count, its view count, then per view "view:<view>" and the identity asked,
# "<fingerprint>:<layout id>". Returns first one status letter per (group, view): "." its
# generation is that identity's, "x" another identity's (its rows are returned, to be counted
# and refused), "n" no data, "L" data from before generations (tag:<view>); then one HMGET
# reply per hash. A view without a generation reads the empty field name, never a generation.
READ_SCRIPT = """#!lua flags=no-writes
local out, k, a = {''}, 2, 1
while a <= #ARGV do
  local nkeys, nviews = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local names = {}
  for i = 1, nviews do
    names[i] = ARGV[a + 2 * i]
  end
  local claims = redis.call('HMGET', KEYS[1], unpack(names))
  local fields, status = {}, {}
  for i = 1, nviews do
    local held, generation = string.match(claims[i] or '', '^(.*):(%d+)$')
    if generation then
      fields[i] = generation
      status[i] = (held == ARGV[a + 2 * i + 1]) and '.' or 'x'
    else
      fields[i] = ''
      local legacy = redis.call('HEXISTS', KEYS[1], 'tag:' .. string.sub(names[i], 6))
      status[i] = (legacy == 1) and 'L' or 'n'
    end
  end
  out[1] = out[1] .. table.concat(status)
  a = a + 2 + 2 * nviews
  for _ = 1, nkeys do
    out[k] = redis.call('HMGET', KEYS[k], unpack(fields))
    k = k + 1
  end
end
return out
"""

# Retires what the meta hash KEYS[1] holds of the view named ARGV[1]: its generation and a tag
# from before generations become "retired:<n>" (their rows are garbage to collect), and its
# view:, tag: and watermark: entries go. Returns 1 when something was retired.
_RETIRE = """
local function retire(meta, view)
  local retired = 0
  local claim = redis.call('HGET', meta, 'view:' .. view)
  if claim then
    redis.call('HSET', meta, 'retired:' .. string.match(claim, ':(%d+)$'), view)
    retired = 1
  end
  local legacy = redis.call('HGET', meta, 'tag:' .. view)
  if legacy then
    redis.call('HSET', meta, 'retired:' .. legacy, view)
    retired = 1
  end
  redis.call('HDEL', meta, 'view:' .. view, 'tag:' .. view, 'watermark:' .. view)
  return retired
end
"""

DROP_SCRIPT = _RETIRE + "return retire(KEYS[1], ARGV[1])\n"

# KEYS[1]: meta; ARGV[1]: the view; ARGV[2]: "<fingerprint>:<layout id>". Continues the view's
# generation when it stands for that identity, else retires what the view holds and gives a
# new generation. Returns {generation, 1 when something was retired}.
CLAIM_SCRIPT = (
    _RETIRE
    + """
local meta, view, identity = KEYS[1], ARGV[1], ARGV[2]
local held, generation = string.match(
  redis.call('HGET', meta, 'view:' .. view) or '', '^(.*):(%d+)$')
if held == identity then
  return {generation, 0}
end
local retired = retire(meta, view)
generation = redis.call('HINCRBY', meta, 'next_tag', 1)
redis.call('HSET', meta, 'view:' .. view, identity .. ':' .. generation)
return {tostring(generation), retired}
"""
)

# KEYS[1]: meta; ARGV: "view:<view>", the claim, "watermark:<view>", the value. 0: refused.
WATERMARK_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
return 1
"""

SCRIPTS = (WRITE_SCRIPT, READ_SCRIPT, DROP_SCRIPT, CLAIM_SCRIPT, WATERMARK_SCRIPT)


def _held(identity: ViewIdentity) -> str:
    """How ``view:<view>`` names an identity (without the generation)."""
    return f"{identity.fingerprint}:{identity.layout}"


def _claim_value(claim: Claim) -> str:
    """What ``view:<view>`` holds while ``claim`` is current."""
    return f"{_held(claim.identity)}:{claim.generation}"


_ReadCall = tuple[list[str], list[Any], list[tuple[int, tuple[ViewIdentity, ...]]]]


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

        super().__init__()
        self.location = mask_url(url)
        self.project = project
        self._url = url
        self._timeout = socket_timeout
        self._async_clients: dict[tuple[int, int], Any] = {}
        self._prefix = f"{project}|"
        self._meta = f"{project}#meta"
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        # Only a broken connection is worth an immediate second try (a restarted server);
        # after a timeout, a second try would only double the wait the README promises.
        self._reset = redis.exceptions.ConnectionError
        self._noscript = redis.exceptions.NoScriptError
        self._response_error = redis.exceptions.ResponseError
        self._auth_error = redis.exceptions.AuthenticationError
        # everything _translate turns into our errors (AuthenticationError first: a subclass)
        self._failures: tuple[type[BaseException], ...] = (
            self._auth_error,
            *self._errors,
            self._response_error,
        )
        self._pack = hiredis.pack_command
        self._local = threading.local()
        self._lock = threading.Lock()
        self._own_connections: list[Any] = []
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(self._reset,)),
            )
        except ValueError as exc:
            raise OnlineStoreError(f"invalid Redis URL {self.location}: {exc}") from None
        self._write_sha, self._read_sha, self._drop_sha, self._claim_sha, self._watermark_sha = (
            self._sha(script) for script in SCRIPTS
        )

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
        except self._failures as exc:
            raise self._translate(what, exc) from None

    def _translate(self, what: str, exc: BaseException) -> OnlineStoreError:
        """The error a redis-py exception becomes (one wording for sync and async calls)."""
        if isinstance(exc, self._auth_error):
            return OnlineStoreUnavailable(
                f"Redis at {self.location} refused the credentials in its URL ({what}): "
                f"{str(exc).rstrip('.')}. Put the right password in the URL: "
                "redis://:PASSWORD@host:port/db"
            )
        if isinstance(exc, self._errors):
            return OnlineStoreUnavailable(
                f"Redis at {self.location} does not answer ({what}): {str(exc).rstrip('.')}. "
                "Is the server running, and the URL (featurestore.yaml or "
                "FEATURESTORE_REDIS_URL) right?"
            )
        return OnlineStoreError(f"Redis at {self.location} refused to {what}: {exc}")

    def _load_scripts(self) -> None:
        for script in SCRIPTS:
            self._client.script_load(script)

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
        """One script call, with connection failures turned into OnlineStoreUnavailable."""
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
        """One field of the project's meta hash."""
        # Any: redis-py types replies as str, but this client does not decode them
        raw: Any = self._call(what, lambda: self._client.hget(self._meta, field))
        return raw

    def _holds(self, view: str) -> int | None:
        """The view's current generation (None: none), for error messages."""
        raw = self._meta_field("read a generation", f"view:{view}")
        return None if raw is None else int(raw.rsplit(b":", 1)[1])

    # --- the interface -------------------------------------------------------------------

    def ping(self) -> None:
        self._call("answer PING", self._client.ping)

    def claim(self, identity: ViewIdentity) -> Claim:
        generation, retired = self._script(
            "claim a view", self._claim_sha, [self._meta], [identity.view, _held(identity)]
        )
        if retired:
            self._call("drop a view", self._collect_retired)
        return Claim(identity, int(generation))

    def write_rows(
        self,
        claim: Claim,
        batch: pa.RecordBatch,
        join_keys: Sequence[str],
        features: Sequence[Field],
    ) -> int:
        codec = RowCodec(features)
        if codec.layout != claim.identity.layout:
            raise OnlineStoreError(
                f"rows of feature view {claim.identity.view!r} encoded with layout "
                f"{codec.layout}, but its claim is for layout {claim.identity.layout}"
            )
        if batch.num_rows == 0:
            return 0
        keys = [self._prefix + k for k in entity_keys(batch, join_keys)]
        rows = codec.encode_batch(batch)
        head = (f"view:{claim.identity.view}", _claim_value(claim), claim.generation)
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

    async def read_async(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        """``read`` over redis.asyncio on the running loop's own client: the same script
        calls, replies and refusals, without blocking the loop while the server answers."""
        calls, commands = self._read_calls(groups)
        if not commands:
            return []
        client = self._async_client()
        try:
            replies = [await self._async_script(client, command) for command in commands]
        except self._failures as exc:
            raise self._translate("read rows", exc) from None
        return self._read_rows(calls, replies)

    async def _async_script(self, client: Any, command: tuple[Any, ...]) -> Any:
        try:
            return await client.execute_command(*command)
        except self._noscript:  # a new or restarted server: register the scripts, once more
            for script in SCRIPTS:
                await client.script_load(script)
            return await client.execute_command(*command)

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
                timeout=self._timeout,  # waiting for a free connection counts as not answering
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
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
            asked = [a for v in views for a in (f"view:{v.view}", _held(v))]
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

    def _refuse(
        self,
        statuses: str,
        rows: list[list[bytes | None]],
        parts: list[tuple[int, tuple[ViewIdentity, ...]]],
    ) -> None:
        """Blank (and count) the rows of views whose generation is another identity's;
        raise for a view holding data from before generations."""
        letters = iter(statuses)  # one per (group, view), in order
        start = 0
        for count, views in parts:
            for j, view in enumerate(views):
                letter = next(letters)
                if letter == "L":
                    raise written_before_layouts(view.view, self.location)
                if letter == "x":
                    refused = 0
                    for row in rows[start : start + count]:
                        if row[j] is not None:
                            row[j] = None
                            refused += 1
                    self._count_refused(view.view, refused)
            start += count

    def get_watermark(self, view: str) -> Watermark | None:
        raw = self._meta_field("read a watermark", f"watermark:{view}")
        return None if raw is None else _parse_watermark(raw)

    def set_watermark(self, claim: Claim, watermark: Watermark) -> None:
        created = "" if watermark.max_created is None else timestamp_us(watermark.max_created)
        view = claim.identity.view
        args = [f"view:{view}", _claim_value(claim), f"watermark:{view}"]
        args.append(f"{timestamp_us(watermark.end)}:{created}")
        if not self._script("write a watermark", self._watermark_sha, [self._meta], args):
            raise changed_under(claim, self._holds(view), self.location)

    def drop_view(self, view: str) -> int:
        self._script("drop a view", self._drop_sha, [self._meta], [view])
        return self._call("drop a view", self._collect_retired)

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


def _parse_watermark(raw: bytes) -> Watermark:
    end, created = raw.decode().split(":")
    return Watermark(from_us(int(end)), from_us(int(created)) if created else None)
