"""Redis Cluster as the online store: the single server's layout and guarantees over 16,384 slots.

Layout: the same keys and values as on one server (featurestore/online/redis.py)::

    <project>|<entity key>   HASH   <generation> -> codec row      slot CRC16(key) mod 16384
    <project>#meta           HASH   view:, watermark:, next_tag,   one slot, so one master
                                    epoch, retired: entries

Each entity's hash lands in the slot its whole name hashes to (no hash tags: project names
have no braces, and an entity key only has one if a string key value does, which then just
picks its slot), so entities spread evenly over the masters, and every view of an entity,
aggregation tiles included, lives in that entity's one hash, in one slot. The meta hash is
one key on one master. Discovery, the slot map and connection settings are redis-py's
``RedisCluster``; featurestore/online/cluster_client.py sends each command to the master
that map names, one pipeline per node, and follows MOVED, ASK and TRYAGAIN.

What a request costs (it grows with the masters holding the keys, never with the keys):

- A read of N entities is one round, in parallel (``read_async`` and ``read_tiles_async``,
  for the prediction service, run the same reads in a worker thread so the event loop is
  never blocked): per
  master holding some of them one read script call (``EVALSHA``, one ``HMGET`` per hash),
  all sent before any reply is read. Plus, in the same round, one ``HMGET`` of the views'
  ``view:`` entries on the meta hash's master, unless this store checked less than ``lease``
  (1 s) ago that each view's generation stands for the identity the read asks for: so the
  meta hash's master takes about one small command per second per reader process and view,
  not one per request.
- A batch of rows to write is one script call per master and 1,000 keys, all sent at once,
  then one ``HGET`` of the claim; before a watermark moves, one ``WAIT`` per master written.
- The scripts may touch keys of several slots of their node (``allow-cross-slot-keys``,
  featurestore/online/redis_scripts.py). When a slot is moving or has moved (resharding, a
  failover), the node stops such a call at the first key it no longer serves; its keys are
  then sent one call per key, which Redis redirects (MOVED, ASK) key by key, and the slot
  map is read again before the next request. Every call is idempotent (reads; writes under
  the never-regress rule), so a call that stopped halfway is simply sent again.

How the single server's guarantees hold where a script cannot see both a data hash and the
meta hash (their slots differ):

- **Never regress** per key: unchanged. Each key's compare-and-set runs in one script call on
  the key's master (``PUT``, shared with the single server).
- **Claims, drops, watermarks** touch only the meta hash: the same atomic scripts. A claim
  or drop is made durable before it is used (``WAIT`` for the meta master's replicas): a
  failover that lost one could give a generation twice. A meta hash lost with its master
  (restarted empty, no replica) while others kept the project's rows starts counting
  generations far above them, at random (``_first_generation``), not from 0 again.
- **Rows are read only for the identity asked.** A write carries its generation alone (the
  field name) and cannot check the claim atomically. A generation always stands for the one
  identity it was given to, so a row is never decoded with another layout; and a read uses a
  view's generation only when its ``view:`` entry names the identity the reader's registry
  asks for: checked in the same round as the data, or (the steady state) less than ``lease``
  ago. A reader whose registry changed (an ``apply``) always checks; a reader still asking
  for a dropped identity sees the drop within ``lease``, and until then reads rows of that
  identity. A run that outlived an ``apply`` writes only under its own dead generation, which
  no reader of the new definition asks for; it sees the change in the ``HGET`` of its claim
  after each batch, deletes that batch's rows under its dead generation, fails, and its
  watermark is refused (atomically, in the meta hash). Rows a killed process wrote under a
  dead generation after its drop had collected them are collected by the next drop or
  replacing claim, whose pass over the project's keys deletes every field whose generation
  (its leading digits, so tile fields ``<generation>:...`` too) was given (at most
  ``next_tag``) and is no view's current one.
- **Replication.** Replication is asynchronous: a write a master acknowledged can be lost
  when it fails over. Before a view's watermark moves, every master this run wrote to must
  have all the replicas the cluster lists for it acknowledge the writes (``WAIT``, half of
  ``socket_timeout``), else the run fails and the watermark stays; so a watermark never claims
  rows a failover lost. What can still be lost: rows written since the last ``WAIT`` (a run
  still going, or one that failed) when their master dies, so that key serves its previous
  row until the next run (which rewrites it, the watermark not having moved); a watermark
  itself (the next run then redoes work, idempotently); everything of a master and all its
  replicas lost together; and, as ever with Redis, a master restarted without persistence
  before its replica took over comes back empty and is followed by its replica.
- **A request fails as a whole.** A node that does not answer, or a cluster that answers
  CLUSTERDOWN, fails the whole read or write with ``OnlineStoreUnavailable`` naming the node
  (and the masters the cluster sees failing); nothing partial is returned. The slot map is
  read again at the next request, so reads recover by themselves once a replica has taken
  over. A connection found reset is tried once more at once; a timeout is not retried.

Differences from one server: a drop is seen by readers still asking for the dropped
identity within ``lease`` (1 s) rather than at once, and a read racing a drop can return
some rows of the dropped generation (each a row of the identity asked); a drop's pass over
the keys can miss keys whose slot moves during it (the next drop collects them); data from
before layout ids cannot exist on a cluster (earlier versions refused ``cluster: true``).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from featurestore.errors import OnlineStoreError, OnlineStoreUnavailable
from featurestore.online import redis_scripts as lua
from featurestore.online.base import (
    Claim,
    KeyGroup,
    TileAnswer,
    TileId,
    TileRead,
    ViewIdentity,
    Watermark,
    changed_under,
)
from featurestore.online.cluster_client import Call, ClusterClient, Job
from featurestore.online.codec import from_us
from featurestore.online.redis_base import (
    READ_BATCH,
    RETIRED,
    SCAN_COUNT,
    WRITE_BATCH,
    ReadParts,
    RedisStoreBase,
    claim_value,
    held,
)
from featurestore.online.redis_tiles import tile_name

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.definitions import Field

READ_TRIES = 3  # reads again when a view's generation changed during the read
LEASE = 1.0  # seconds a read trusts a generation it checked (RedisClusterOnlineStore.lease)
_GENERATION = re.compile(rb"\d+")


class RedisClusterOnlineStore(RedisStoreBase):
    """The online store on a Redis Cluster (layout, costs and guarantees: module docstring).

    ``url`` names one node (``redis://`` or ``rediss://``, database 0); ``startup_nodes``
    (``"host:port"``) more nodes to discover the cluster from. Nothing connects until the
    first call.
    """

    #: seconds during which a read uses a view's generation, checked by an earlier read to
    #: stand for the identity asked, without checking it again (module docstring)
    lease = LEASE

    def __init__(
        self,
        url: str,
        project: str,
        *,
        socket_timeout: float = 5.0,
        startup_nodes: Sequence[str] = (),
    ) -> None:
        super().__init__(url, project, socket_timeout)
        self._nodes = ClusterClient(url, self.location, socket_timeout, startup_nodes)
        # view -> (its view: entry as last read, when it was read: time.monotonic())
        self._views: dict[str, tuple[bytes | None, float]] = {}
        self._meta_key = self._meta.encode()

    def _one(self, what: str, command: tuple[Any, ...]) -> Any:
        """One command on the project's meta hash."""
        return self._nodes.checked(what, self._nodes.route(what, [(self._meta_key, command)])[0])

    # --- what RedisStoreBase needs --------------------------------------------------------

    def _script(self, what: str, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        reply = self._one(what, ("EVALSHA", sha, len(keys), *keys, *args))
        if sha in (lua.CLAIM_SHA, lua.DROP_SHA):  # generations must survive a failover
            self._nodes.replicated(what, {self._nodes.master_of(self._meta_key)})
        return reply

    def _meta_field(self, what: str, field: str) -> bytes | None:
        raw: bytes | None = self._one(what, ("HGET", self._meta, field))
        return raw

    def _meta_fields(self, what: str, fields: Sequence[str]) -> list[bytes | None]:
        raw: list[bytes | None] = self._one(what, ("HMGET", self._meta, *fields))
        return raw

    async def get_watermarks_async(self, views: Sequence[str]) -> dict[str, Watermark | None]:
        """``get_watermarks`` in a worker thread, as ``read_async``."""
        import asyncio

        return await asyncio.to_thread(self.get_watermarks, views)

    def _collect_retired(self) -> int:
        """Delete every row of a dead generation: one SCAN over each master's keys of the
        project, then per key its fields whose generation was given (at most ``next_tag``)
        and is no view's current one (retired ones, and rows a stale run left)."""
        what = "drop a view"
        raw = self._one(what, ("HGETALL", self._meta))
        meta = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
        markers = [f for f in meta if f.startswith(RETIRED.encode())]
        if not markers:
            return 0
        current = {v.rsplit(b":", 1)[1] for f, v in meta.items() if f.startswith(b"view:")}
        top = int(meta.get(b"next_tag", b"0"))

        def dead(field: bytes) -> bool:
            match = _GENERATION.match(field)
            return match is not None and int(match[0]) <= top and match[0] not in current

        removed = 0
        for keys in self._project_keys(what):
            listed = self._nodes.route(what, [(k, ("HKEYS", k)) for k in keys])
            deletes: list[Call] = [
                (k, ("HDEL", k, *fields))
                for k, names in zip(keys, listed, strict=True)
                if isinstance(names, list) and (fields := [f for f in names if dead(f)])
            ]
            removed += sum(r for r in self._nodes.route(what, deletes) if isinstance(r, int))
        self._one(what, ("HDEL", self._meta, *markers))
        return removed

    # --- the interface -------------------------------------------------------------------

    def ping(self) -> None:
        """Every master answers PING, and the cluster says its state is ok."""
        masters = sorted(self._nodes.masters())
        got = self._nodes.exchange(
            "answer PING", {m: [("PING",), ("CLUSTER", "INFO")] for m in masters}
        )
        for node, (pong, info) in got.items():
            self._nodes.checked(f"answer PING on {node}", pong)
            if b"cluster_state:ok" not in self._nodes.checked("answer PING", info):
                raise OnlineStoreUnavailable(
                    f"Redis Cluster node {node} says the cluster is down (cluster_state is not "
                    f"ok): a slot has no master (cluster {self.location})"
                )

    def write_rows(
        self,
        claim: Claim,
        batch: pa.RecordBatch,
        join_keys: Sequence[str],
        features: Sequence[Field],
    ) -> int:
        names, rows = self._encode(claim, batch, join_keys, features)
        if not names:
            return 0
        keys = [name.encode() for name in names]
        job = (keys, [claim.generation], rows)
        written = self._nodes.written()
        [done], _ = self._nodes.keyed(
            "write rows", lua.CLUSTER_WRITE_SHA, [job], WRITE_BATCH, written=written
        )
        view = claim.identity.view
        entry, epoch = self._meta_fields("check the run's claim", [f"view:{view}", "epoch"])
        if entry != claim_value(claim).encode():
            # invisible already; deleted so they take no memory (else the next drop does)
            with contextlib.suppress(OnlineStoreError):
                deletes = [(k, ("HDEL", k, claim.generation)) for k in keys]
                self._nodes.route("delete refused rows", deletes)
            raise changed_under(claim, self._holds(view), self.location)
        if epoch != claim.epoch.encode():
            # a server restarted empty gave the same generation to the same identity again:
            # these rows are that generation's (kept), but the run's earlier ones are gone
            raise changed_under(claim, self._holds(view), self.location)
        return sum(count for _, count in done)

    def read(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        if not any(g.entity_keys for g in groups):
            return []
        asked = {v.view: v for g in groups for v in g.views}
        names = list(asked)
        now = time.monotonic()
        if any(n not in self._views for n in names):
            entries = self._one("read rows", ("HMGET", self._meta, *(f"view:{n}" for n in names)))
            self._views.update((n, (e, now)) for n, e in zip(names, entries, strict=True))
        # Within its lease, a generation that stands for the identity asked is used without
        # asking the meta hash again (module docstring); any other state is checked each read.
        trusted = all(
            _status(self._views[n][0], asked[n]) == "." and now - self._views[n][1] < self.lease
            for n in names
        )
        for _ in range(READ_TRIES):
            seen = {n: self._views[n][0] for n in names}
            rows, current = self._read_rows(groups, seen, None if trusted else names)
            if current is None:
                break
            self._views.update((n, (e, now)) for n, e in zip(names, current, strict=True))
            if current == [seen[n] for n in names]:
                break  # checked: what was read is what the views hold
        else:
            raise OnlineStoreError(
                f"the online data of {', '.join(names)} kept changing during {READ_TRIES} reads "
                f"in Redis Cluster {self.location} (materializations or applies); try again"
            )
        statuses = "".join(
            _status(seen[v.view], v) for g in groups if g.entity_keys for v in g.views
        )
        if statuses.strip(".n"):
            parts: ReadParts = [(len(g.entity_keys), g.views) for g in groups if g.entity_keys]
            self._refuse(statuses, rows, parts)
        return rows

    def _read_rows(
        self, groups: Sequence[KeyGroup], seen: dict[str, bytes | None], check: list[str] | None
    ) -> tuple[list[list[bytes | None]], list[Any] | None]:
        """One round: every group's rows under the generations ``seen``, and, for the views
        named in ``check``, their ``view:`` entries as they are now (to check ``seen``)."""
        jobs: list[Job] = []
        for views, entity_keys in groups:
            fields = [_generation(seen[v.view]) for v in views]
            keys = [(self._prefix + k).encode() for k in entity_keys] if any(fields) else []
            jobs.append((keys, fields, None))
        extra: list[Call] = []
        if check is not None:
            extra = [(self._meta_key, ("HMGET", self._meta, *(f"view:{n}" for n in check)))]
        done, current = self._nodes.keyed(
            "read rows", lua.CLUSTER_READ_SHA, jobs, READ_BATCH, extra
        )
        rows: list[list[bytes | None]] = []
        for (views, entity_keys), calls in zip(groups, done, strict=True):
            out: list[list[bytes | None]] = [[None] * len(views) for _ in entity_keys]
            for chunk, replies in calls:
                for i, reply in zip(chunk, replies, strict=True):
                    out[i] = reply
            rows += out
        return rows, self._nodes.checked("read rows", current[0]) if current else None

    # --- aggregated views' tiles (layout: featurestore/online/redis_tiles.py) ---------------

    def write_tiles(
        self,
        claim: Claim,
        entity_keys: Sequence[str],
        tiles: Sequence[Sequence[tuple[TileId, bytes]]],
    ) -> int:
        """One script call per key (its tiles under the claim's generation, each with the
        never-regress compare), routed to the key's master, ``WRITE_BATCH`` keys per round;
        then the claim is checked, as for rows."""
        calls: list[Call] = []
        for key, key_tiles in zip(entity_keys, tiles, strict=True):
            if key_tiles:
                name = (self._prefix + key).encode()
                pairs = [x for tile, row in key_tiles for x in (tile_name(tile), row)]
                calls.append(
                    (
                        name,
                        ("EVALSHA", lua.CLUSTER_TILE_WRITE_SHA, 1, name, claim.generation, *pairs),
                    )
                )
        written_nodes = self._nodes.written()
        written = 0
        for start in range(0, len(calls), WRITE_BATCH):
            replies = self._nodes.route(
                "write tiles", calls[start : start + WRITE_BATCH], written_nodes
            )
            written += sum(self._nodes.checked("write tiles", r) for r in replies)
        view = claim.identity.view
        held = self._meta_fields("check the run's claim", [f"view:{view}", "epoch"])
        if held != [claim_value(claim).encode(), claim.epoch.encode()]:
            raise changed_under(
                claim, self._holds(view), self.location
            )  # the next drop collects them
        return written

    def read_tiles(
        self, groups: Sequence[KeyGroup], tile_reads: Sequence[TileRead]
    ) -> tuple[list[list[bytes | None]], list[TileAnswer]]:
        """The rows (``read``), then the views' ``view:`` and ``watermark:`` entries from the
        meta hash, then every key's tiles under the generation found, routed to their
        masters in one round: three rounds at most (one server: one)."""
        rows = self.read(groups)
        if not tile_reads:
            return rows, []
        fields = [
            f for r in tile_reads for f in (f"view:{r.view.view}", f"watermark:{r.view.view}")
        ]
        meta = self._one("read tiles", ("HMGET", self._meta, *fields))
        calls: list[Call] = []
        plans: list[tuple[int, int] | None] = []  # per read: its calls' span, None: no data
        for i, request in enumerate(tile_reads):
            entry = meta[2 * i]
            status = _status(entry, request.view)
            if status == "n" or not request.entity_keys:
                plans.append(None)
                continue
            generation = _generation(entry)
            names = [generation + b":" + tile_name(t).encode() for t in request.tiles]
            first = len(calls)
            for key in request.entity_keys:
                name = (self._prefix + key).encode()
                calls.append((name, ("HMGET", name, *names)))
            plans.append((first, len(calls)))
        replies = self._nodes.route("read tiles", calls) if calls else []
        answers = []
        for i, (request, span) in enumerate(zip(tile_reads, plans, strict=True)):
            mark = meta[2 * i + 1]
            if span is not None and _status(meta[2 * i], request.view) == "x":
                # another identity's tiles: refused, and counted as the single server does
                found = [self._nodes.checked("read tiles", r) for r in replies[span[0] : span[1]]]
                self._count_refused(request.view.view, sum(v is not None for r in found for v in r))
                span = None
            if span is None or not mark:
                answers.append(
                    TileAnswer(None, [[None] * len(request.tiles) for _ in request.entity_keys])
                )
                continue
            found = [self._nodes.checked("read tiles", r) for r in replies[span[0] : span[1]]]
            answers.append(TileAnswer(from_us(int(mark.split(b":")[0])), [list(r) for r in found]))
        return rows, answers

    def remove_tiles(self, claim: Claim, keep_from: Sequence[TileId]) -> int:
        """The generation's tiles older than ``keep_from``: one SCAN over each master's keys
        of the project, one sweep call per key found."""
        what = "remove old tiles"
        args: list[Any] = [claim.generation]
        for level, first in keep_from:
            args += [level, first]
        removed = 0
        for keys in self._project_keys(what):
            calls: list[Call] = [(k, ("EVALSHA", lua.TILE_SWEEP_SHA, 1, k, *args)) for k in keys]
            removed += sum(
                int(self._nodes.checked(what, r)) for r in self._nodes.route(what, calls)
            )
        return removed

    async def read_async(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        """``read`` in a worker thread (asyncio's default executor), so the event loop goes on
        while the masters answer; each worker thread keeps its own connections."""
        import asyncio

        return await asyncio.to_thread(self.read, groups)

    async def read_tiles_async(
        self, groups: Sequence[KeyGroup], tile_reads: Sequence[TileRead]
    ) -> tuple[list[list[bytes | None]], list[TileAnswer]]:
        """``read_tiles`` in a worker thread, as ``read_async``."""
        import asyncio

        return await asyncio.to_thread(self.read_tiles, groups, tile_reads)

    def _first_generation(self) -> int:
        """0 for a new project; but when the meta hash lost its counter while other masters
        kept the project's rows (its master restarted empty, without a replica), counting
        from 0 again would give generations those rows are stored under, and a reader of the
        new definition would decode them with its layout: then far above them, at random."""
        what = "claim a view"
        if self._one(what, ("HEXISTS", self._meta, "next_tag")):
            return 0  # not used: the counter continues
        if any(keys for keys in self._project_keys(what)):
            return secrets.randbelow(2**30) + 2**20
        return 0

    def _project_keys(self, what: str) -> Iterator[list[bytes]]:
        """The project's keys on every master, one SCAN batch at a time (lazily: a caller
        may stop at the first batch it needs)."""
        for node in sorted(self._nodes.masters()):
            cursor: Any = b"0"
            while True:
                scan = ("SCAN", cursor, "MATCH", f"{self._prefix}*", "COUNT", SCAN_COUNT)
                reply = self._nodes.exchange(what, {node: [scan]})[node][0]
                cursor, keys = self._nodes.checked(what, reply)
                yield keys
                if int(cursor) == 0:
                    break

    def claim(self, identity: ViewIdentity) -> Claim:
        try:
            return super().claim(identity)
        finally:
            self._views.pop(identity.view, None)  # this store's own reads see it at once

    def drop_view(self, view: str) -> int:
        try:
            return super().drop_view(view)
        finally:
            self._views.pop(view, None)

    def set_watermark(self, claim: Claim, watermark: Watermark) -> None:
        """Refused, like every step of a run, unless the replicas have its rows (WAIT)."""
        written = self._nodes.written()
        self._nodes.replicated("move the watermark", written)
        written.clear()
        super().set_watermark(claim, watermark)

    def close(self) -> None:
        self._nodes.close()


def _generation(entry: bytes | None) -> bytes:
    """The generation a ``view:`` entry names (its last field), or b"" (no field) for none."""
    return b"" if entry is None else entry.rsplit(b":", 1)[1]


def _status(entry: bytes | None, asked: ViewIdentity) -> str:
    """The single server's status letter for a view (see redis_scripts.READ_SCRIPT)."""
    if entry is None:
        return "n"
    return "." if entry.rsplit(b":", 1)[0] == held(asked).encode() else "x"
