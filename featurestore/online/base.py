"""The online store interface: the latest row per (view, entity key), never regressing.

Three implementations: ``RedisOnlineStore`` (featurestore/online/redis.py, production),
``RedisClusterOnlineStore`` (featurestore/online/redis_cluster.py, the same layout over a
Redis Cluster) and ``SqliteOnlineStore`` (featurestore/online/sqlite.py, the embedded
default). All store the rows ``featurestore.online.codec`` encodes and keep each view's
``Watermark`` beside the data (a flushed or different store starts from zero).
``open_online_store`` picks one from ``featurestore.yaml``; an unreachable configured store
raises ``OnlineStoreUnavailable`` and is never replaced by another. Everything is per
project: two projects sharing a store never see each other's rows or watermarks.

Which definition the data belongs to. Rows are positional (codec.py), so a row is only
meaningful with the definition it was written for: its ``ViewIdentity``, the view's name,
fingerprint and row layout id. A store holds at most one identity's data per view, under a
*generation*: a number the store gives when it starts holding a view's data for an identity,
never given twice (not even after a drop), and carried by every stored row (the Redis field
name, the SQLite row's key). The store keeps, beside the data, the view's
current generation and the identity it stands for. Then:

- A read asks for each view's identity as the applied registry has it, and gets only rows of
  the view's current generation when that generation stands for exactly this identity; any
  other row (another fingerprint or layout, e.g. a reader whose registry is behind, or a store
  a different registry wrote) reads as absent, and is counted in ``refused_rows`` (for the
  ``/metrics`` endpoint). Data written before generations existed (no layout id) is refused
  with an ``OnlineStoreError`` that says to materialize again: there is no migration.
- A materialization run ``claim``s each view when it starts: the store keeps the view's data
  if it was written for the same identity (same generation and watermark), else (another
  fingerprint or layout, data without a layout id, nothing) drops it and starts a new
  generation. The registry is the truth: whatever a store holds, a run writes what the applied
  definition says, so an ``apply`` that died between dropping online data and writing the
  registry is repaired by the next run (or ``apply``).
- Every write and watermark of the run names its claim, and is refused once the view's current
  generation is no longer the claim's (an ``apply`` dropped the view, or another run claimed it
  for another definition), atomically with the write on a single Redis server and on SQLite:
  a run that spans an ``apply`` fails instead of mixing layouts, and its watermark stays.
  Where the check cannot be atomic with the write (Redis Cluster: the data hash and the
  project's meta hash live in different slots), a stale write lands only under its own dead
  generation, which no reader of the new definition asks for; the run sees the change right
  after the batch, deletes that batch and fails; the watermark check, which needs only the
  meta hash, stays atomic (featurestore/online/redis_cluster.py).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from featurestore.errors import OnlineStoreError
from featurestore.online.codec import view_layout_id

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.config import RepoConfig
    from featurestore.definitions import Field
    from featurestore.registry_state import ViewRecord


@dataclass(frozen=True)
class Watermark:
    """How far a view has been materialized.

    ``end``: the end of the last successful run (every row with ``event_ts <= end`` known
    then was written). ``max_created``: the greatest created timestamp written so far (None
    when the source has no created column or nothing was written), so that a later run can
    pick up late rows created after it.
    """

    end: datetime
    max_created: datetime | None


class ViewIdentity(NamedTuple):
    """The definition a view's online data is written for, and read with.

    ``fingerprint``: the applied view's fingerprint (what changes its values); ``layout``:
    ``codec.view_layout_id`` (its features' row layout, or an aggregated view's tile layout:
    what decoding needs).
    """

    view: str
    fingerprint: str
    layout: str

    @classmethod
    def of(cls, record: ViewRecord) -> ViewIdentity:
        """The identity of an applied view (a registry record)."""
        return cls(record.view.name, record.fingerprint, view_layout_id(record.view))


@dataclass(frozen=True)
class Claim:
    """A run's right to write one view's data: the identity it writes, and the generation
    the store gave that data."""

    identity: ViewIdentity
    generation: int
    epoch: str = ""  # Redis: the meta hash's epoch when claimed (redis_scripts._CLAIMED)


class KeyGroup(NamedTuple):
    """Entity keys that share a set of views: read ``views`` for each of ``entity_keys``."""

    views: tuple[ViewIdentity, ...]
    entity_keys: Sequence[str]


TileId = tuple[int, int]  # (position of the level in the view's levels, tile number)


class TileRead(NamedTuple):
    """An aggregated view's tiles to read: ``tiles`` of each of ``entity_keys``."""

    view: ViewIdentity
    entity_keys: Sequence[str]
    tiles: Sequence[TileId]


@dataclass(frozen=True)
class TileAnswer:
    """What the store holds for a ``TileRead``: the view's covered end (its watermark's end;
    None when the store holds no materialized data for that identity) and, per entity key,
    one row per asked tile (None when absent)."""

    end: datetime | None
    rows: list[list[bytes | None]]


class OnlineStore(ABC):
    """Per (view, entity key) the row with the greatest ``(event_ts, created_ts)`` written.

    Entity keys are the canonical text of ``codec.entity_key``; rows are ``codec.RowCodec``
    bytes, tied to a generation of their view (module docstring). Implementations are safe to
    share between threads.
    """

    #: where the store lives, for messages (passwords masked)
    location: str

    def __init__(self) -> None:
        self._refused: Counter[str] = Counter()
        self._refused_lock = threading.Lock()

    @property
    def refused_rows(self) -> dict[str, int]:
        """Per view, how many stored rows reads refused since the store was opened: rows
        written for another fingerprint or layout than the reader's (read as absent)."""
        with self._refused_lock:
            return dict(self._refused)

    def _count_refused(self, view: str, rows: int) -> None:
        if rows:
            with self._refused_lock:
                self._refused[view] += rows

    @abstractmethod
    def claim(self, identity: ViewIdentity) -> Claim:
        """Start writing ``identity``'s data (a materialization run calls it first).

        If the store holds the view's data for this same identity, the claim continues it
        (same generation, same watermark). Otherwise whatever the store holds of the view
        (data of another fingerprint or layout, or data without a layout id) is dropped with
        its watermark, as by ``drop_view``, and a new generation starts. Atomic.
        """

    @abstractmethod
    def write_rows(
        self,
        claim: Claim,
        batch: pa.RecordBatch,
        join_keys: Sequence[str],
        features: Sequence[Field],
    ) -> int:
        """Write one row per record of ``batch`` (``read_latest``'s columns: the join keys,
        the features, the event and created times: ``columns.EVENT_TS``, ``columns.CREATED_TS``)
        into the claimed view.

        ``features`` must be the view's features in schema order (``FeatureView.features``):
        their layout id must be the claim's, or nothing is written (``OnlineStoreError``).

        Refused with ``OnlineStoreError`` (nothing of the call written) when the view's
        current generation is no longer the claim's; checked atomically with the write (on
        Redis Cluster right after it, the call's rows then deleted, and never readable by a
        reader of the view's current definition meanwhile).

        Never regress: a record is written only when its ``(event_ts, created_ts)`` is
        greater than or equal to the stored row's (a missing created time sorts oldest), and
        that check-and-set is atomic per key. Equal pairs overwrite, so re-running a
        materialization is idempotent. Returns the number of rows actually written.
        """

    @abstractmethod
    def read(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        """The stored rows for every entity key of every group, in one round trip (on Redis
        Cluster, one round of calls in parallel, one per master holding the keys).

        Returns one list per entity key (groups in order, keys in order), holding one row
        (or None when absent) per view of its group, in the group's view order. A row is
        returned only when the view's current generation stands for the asked identity;
        others are None and counted in ``refused_rows``. Raises ``OnlineStoreError`` for a
        view whose data was written before layout ids (it must be materialized again).
        """

    async def read_async(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        """``read`` awaited on an event loop; stores with a network round trip override it
        so the loop is not blocked while the server answers (here: the blocking ``read``)."""
        return self.read(groups)

    @abstractmethod
    def write_tiles(
        self,
        claim: Claim,
        entity_keys: Sequence[str],
        tiles: Sequence[Sequence[tuple[TileId, bytes]]],
    ) -> int:
        """Write an aggregated view's tiles: for each entity key, its (tile id, row) pairs
        (rows of ``aggregations.online.tile_codec``, whose 16-byte prefix is (tile start,
        run end)). A tile is written unless the stored one's prefix is greater (a tile is
        never replaced by one computed from an earlier run end); equal ones are rewritten.
        Refused with ``OnlineStoreError`` (nothing written) once the claim is no longer
        current, atomically with the write. Returns the tiles written."""

    @abstractmethod
    def remove_tiles(self, claim: Claim, keep_from: Sequence[TileId]) -> int:
        """Delete the claimed view's tiles older than what windows can still read: for each
        ``(level position, first tile number kept)``, that level's earlier tiles, of every
        entity key. Returns how many were deleted (Redis: how many fields)."""

    @abstractmethod
    def read_tiles(
        self, groups: Sequence[KeyGroup], tile_reads: Sequence[TileRead]
    ) -> tuple[list[list[bytes | None]], list[TileAnswer]]:
        """``read(groups)`` and the tiles of ``tile_reads``, in one round trip. A view whose
        current generation is not the asked identity's answers ``end=None`` and no rows
        (its stored tiles are counted in ``refused_rows``)."""

    async def read_tiles_async(
        self, groups: Sequence[KeyGroup], tile_reads: Sequence[TileRead]
    ) -> tuple[list[list[bytes | None]], list[TileAnswer]]:
        """``read_tiles`` awaited on an event loop; stores with a network round trip override
        it so the loop is not blocked while the server answers (here: the blocking
        ``read_tiles``)."""
        return self.read_tiles(groups, tile_reads)

    @abstractmethod
    def get_watermark(self, view: str) -> Watermark | None:
        """The view's watermark, or None when it was never materialized into this store."""

    def get_watermarks(self, views: Sequence[str]) -> dict[str, Watermark | None]:
        """``get_watermark`` of each view; Redis reads them all in one round trip."""
        return {view: self.get_watermark(view) for view in views}

    async def get_watermarks_async(self, views: Sequence[str]) -> dict[str, Watermark | None]:
        """``get_watermarks`` awaited on an event loop; stores with a network round trip
        override it so the loop is not blocked while the server answers (here: the blocking
        ``get_watermarks``)."""
        return self.get_watermarks(views)

    @abstractmethod
    def set_watermark(self, claim: Claim, watermark: Watermark) -> None:
        """Record the claimed view's watermark (call it only after the data is written).

        Refused with ``OnlineStoreError`` when the view's current generation is no longer
        the claim's (checked atomically), so a stale run never moves the watermark. Never
        moves the end back: when the held watermark's end is later (an overlapping run with
        a later end finished first), it stands, atomically; an aggregated view's tiles
        then hold events up to that end, which reads must not go before.
        """

    @abstractmethod
    def drop_view(self, view: str) -> int:
        """Remove every row of ``view`` (any generation, and data without a layout id) and
        its watermark; returns the rows removed.

        Atomic as seen by readers and writers: afterwards the view reads as never
        materialized, a run that had claimed it is refused, and no old row can block a new
        one, even if the call is interrupted (Redis then deletes the leftover rows on a later
        drop or claim). Idempotent.
        """

    @abstractmethod
    def ping(self) -> None:
        """Raise ``OnlineStoreUnavailable`` unless the store answers."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""

    async def close_async(self) -> None:
        """``close``, from the event loop ``read_async`` ran on (its connections too)."""
        self.close()

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def changed_under(claim: Claim, holds: int | None, location: str) -> OnlineStoreError:
    """The error for a write or watermark refused because ``claim`` is no longer current
    (``holds``: the view's current generation in the store, None when it holds nothing)."""
    now = f"generation {holds}" if holds is not None else "no data of it"
    return OnlineStoreError(
        f"feature view {claim.identity.view!r} changed under this run: it claimed generation "
        f"{claim.generation} of the view's online data in {location}, which now holds {now} "
        "(an apply changed or removed the view, or a run of another definition replaced it); "
        "its rows are refused. Materialize the view again with the applied definition"
    )


def written_before_layouts(view: str, location: str) -> OnlineStoreError:
    """The error for reading data that an earlier featurestore wrote without a layout id."""
    return OnlineStoreError(
        f"the online data of feature view {view!r} in {location} was written by an earlier "
        "featurestore version, without the layout id reads now check, so it is not read. "
        f"Materialize the view again (e.g. 'featurestore materialize-incremental now "
        f"--views {view}'): that replaces it"
    )


def open_online_store(config: RepoConfig, *, check: bool = True) -> OnlineStore:
    """The online store ``featurestore.yaml`` configures, checked to answer.

    Redis for ``online_store: {type: redis, url: ...}`` (``FEATURESTORE_REDIS_URL``
    overrides the URL), Redis Cluster with ``cluster: true``, else the embedded SQLite file.
    Raises ``OnlineStoreUnavailable`` when the configured store does not answer, and
    ``ConfigError`` when the server is not what the configuration says (a cluster node
    without ``cluster: true``, or the reverse); never falls back to another store.
    ``check=False`` skips that first ping (a server that starts while Redis is down
    reports it as not ready instead of refusing to start).
    """
    from featurestore.config import RedisConfig

    online = config.online_store
    store: OnlineStore
    if isinstance(online, RedisConfig) and online.cluster:
        from featurestore.online.redis_cluster import RedisClusterOnlineStore

        store = RedisClusterOnlineStore(
            online.url,
            config.project,
            socket_timeout=online.socket_timeout,
            startup_nodes=online.startup_nodes,
        )
    elif isinstance(online, RedisConfig):
        from featurestore.online.redis import RedisOnlineStore

        store = RedisOnlineStore(online.url, config.project, socket_timeout=online.socket_timeout)
    else:
        from featurestore.online.sqlite import SqliteOnlineStore

        store = SqliteOnlineStore(online.path, config.project)
    if not check:
        return store
    try:
        store.ping()
    except BaseException:
        store.close()
        raise
    return store
