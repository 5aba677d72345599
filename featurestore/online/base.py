"""The online store interface: the latest row per (view, entity key), never regressing.

Two implementations: ``RedisOnlineStore`` (featurestore/online/redis.py, production) and
``SqliteOnlineStore`` (featurestore/online/sqlite.py, the embedded default). Both store the
rows ``featurestore.online.codec`` encodes and keep each view's ``Watermark`` beside the data
(a flushed or different store starts from zero). ``open_online_store`` picks one from
``featurestore.yaml``; an unreachable configured store raises ``OnlineStoreUnavailable`` and
is never replaced by another.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.config import RepoConfig
    from featurestore.definitions import Field


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


class KeyGroup(NamedTuple):
    """Entity keys that share a set of views: read ``views`` for each of ``entity_keys``."""

    views: tuple[str, ...]
    entity_keys: Sequence[str]


class OnlineStore(ABC):
    """Per (view, entity key) the row with the greatest ``(event_ts, created_ts)`` written.

    Entity keys are the canonical text of ``codec.entity_key``; rows are ``codec.RowCodec``
    bytes. Implementations are safe to share between threads.
    """

    #: where the store lives, for messages (passwords masked)
    location: str

    @abstractmethod
    def write_rows(
        self, view: str, batch: pa.RecordBatch, join_keys: Sequence[str], features: Sequence[Field]
    ) -> int:
        """Write one row per record of ``batch`` (``read_latest``'s columns: the join keys,
        the features, ``event_ts`` and ``created_ts``).

        ``features`` must be ``FeatureView.features``: all of the view's features in schema
        order, the layout readers decode with (a schema change changes the fingerprint, and
        ``apply`` then drops the view's rows).

        Never regress: a record is written only when its ``(event_ts, created_ts)`` is
        greater than or equal to the stored row's (a missing created time sorts oldest), and
        that check-and-set is atomic per key. Equal pairs overwrite, so re-running a
        materialization is idempotent. Returns the number of rows actually written.
        """

    @abstractmethod
    def read(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        """The stored rows for every entity key of every group, in one round trip.

        Returns one list per entity key (groups in order, keys in order), holding one row
        (or None when absent) per view of its group, in the group's view order.
        """

    @abstractmethod
    def get_watermark(self, view: str) -> Watermark | None:
        """The view's watermark, or None when it was never materialized into this store."""

    @abstractmethod
    def set_watermark(self, view: str, watermark: Watermark) -> None:
        """Record the view's watermark (call it only after the data is written)."""

    @abstractmethod
    def drop_view(self, view: str) -> int:
        """Remove every row of ``view`` and its watermark; returns the rows removed.

        Atomic as seen by readers and writers: afterwards the view reads as never
        materialized, and no old row can block a new one, even if the call is interrupted
        (Redis then deletes the leftover rows on a later drop). Idempotent.
        """

    @abstractmethod
    def ping(self) -> None:
        """Raise ``OnlineStoreUnavailable`` unless the store answers."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_online_store(config: RepoConfig) -> OnlineStore:
    """The online store ``featurestore.yaml`` configures, checked to answer.

    Redis for ``online_store: {type: redis, url: ...}`` (``FEATURESTORE_REDIS_URL``
    overrides the URL), else the embedded SQLite file. Raises ``OnlineStoreUnavailable``
    when the configured store does not answer; never falls back to another store.
    """
    from featurestore.config import RedisConfig
    from featurestore.errors import ConfigError

    online = config.online_store
    if isinstance(online, RedisConfig):
        from featurestore.online.redis import RedisOnlineStore

        if online.cluster:  # read from featurestore.yaml already; never ignored silently
            raise ConfigError("online_store.cluster: Redis Cluster is not supported yet")

        store: OnlineStore = RedisOnlineStore(
            online.url, config.project, socket_timeout=online.socket_timeout
        )
    else:
        from featurestore.online.sqlite import SqliteOnlineStore

        store = SqliteOnlineStore(online.path)
    try:
        store.ping()
    except BaseException:
        store.close()
        raise
    return store
