"""The embedded online store: one SQLite file (WAL), the default when no Redis is configured.

Layout::

    views      (generation INTEGER PRIMARY KEY AUTOINCREMENT,
                project TEXT, view TEXT, fingerprint TEXT, layout TEXT,
                end_us INTEGER, max_created_us INTEGER,          -- the watermark, once set
                UNIQUE (project, view))
    view_rows  (generation INTEGER, entity TEXT, row BLOB,
                PRIMARY KEY (generation, entity)) WITHOUT ROWID
    view_tiles (generation INTEGER, entity TEXT, level INTEGER, tile INTEGER, row BLOB,
                PRIMARY KEY (generation, entity, level, tile)) WITHOUT ROWID

A ``views`` row is a view's current *generation* (featurestore/online/base.py) in one
project: the (fingerprint, layout id) its data was written for, and its watermark.
AUTOINCREMENT never gives a generation twice, even after it is deleted. Every stored row is
keyed by its generation, so it is tied to exactly one project, view, fingerprint and layout:
two projects sharing the file never see each other's rows, and a read returns a row only when
its generation is the view's current one and stands for the identity the reader asks
(generations and rows are read in one transaction, so they agree); others are refused and
counted. ``entity`` is the canonical entity key and ``row`` the codec row, as in Redis.

An aggregated view keeps tiles instead of rows (featurestore/aggregations/online.py):
``view_tiles`` rows keyed by generation, entity key and tile (level position, tile number),
so a key's tiles are one range of the primary key; a tile's row is written with the same
upsert rule (its 16-byte prefix is (tile start, run end)); old tiles go with one DELETE per
level, a claim or drop takes them with the generation.

Never regress is one upsert: ``ON CONFLICT DO UPDATE ... WHERE substr(excluded.row, 1, 16) >=
substr(view_rows.row, 1, 16)`` — SQLite compares BLOBs with memcmp, and the codec's 16-byte
prefix orders exactly like (event_ts, created_ts). A batch is one ``BEGIN IMMEDIATE``
transaction that first checks the view's current generation is still the run's claim (else
nothing is written and the run fails), so the check is atomic with the write, across
processes; a watermark is one UPDATE of the claim's own ``views`` row. ``claim`` and
``drop_view`` are one transaction each: deleting a generation's rows (over the primary key's
prefix) and its ``views`` row together.

Data from before generations (the tables ``rows`` and ``watermarks``, without project or
layout id) is never decoded: reading a view that has such rows and no generation raises an
error saying to materialize again; a claim or drop of the view deletes them (and the old
tables once empty).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.errors import OnlineStoreError, OnlineStoreUnavailable
from featurestore.online.base import (
    Claim,
    KeyGroup,
    OnlineStore,
    TileAnswer,
    TileId,
    TileRead,
    ViewIdentity,
    Watermark,
    changed_under,
    written_before_layouts,
)
from featurestore.online.codec import RowCodec, entity_keys, from_us, timestamp_us
from featurestore.types import MAX_TIME

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.definitions import Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS views (
    generation INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    view TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    layout TEXT NOT NULL,
    end_us INTEGER,
    max_created_us INTEGER,
    UNIQUE (project, view)
);
CREATE TABLE IF NOT EXISTS view_rows (
    generation INTEGER NOT NULL,
    entity TEXT NOT NULL,
    row BLOB NOT NULL,
    PRIMARY KEY (generation, entity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view_tiles (
    generation INTEGER NOT NULL,
    entity TEXT NOT NULL,
    level INTEGER NOT NULL,
    tile INTEGER NOT NULL,
    row BLOB NOT NULL,
    PRIMARY KEY (generation, entity, level, tile)
) WITHOUT ROWID;
"""

UPSERT_TILE = """
INSERT INTO view_tiles (generation, entity, level, tile, row) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (generation, entity, level, tile) DO UPDATE SET row = excluded.row
WHERE substr(excluded.row, 1, 16) >= substr(view_tiles.row, 1, 16)
"""

UPSERT = """
INSERT INTO view_rows (generation, entity, row) VALUES (?, ?, ?)
ON CONFLICT (generation, entity) DO UPDATE SET row = excluded.row
WHERE substr(excluded.row, 1, 16) >= substr(view_rows.row, 1, 16)
"""

MAX_VARIABLES = 30_000  # below SQLite's default limit of 32,766 bound parameters
BUSY_SECONDS = 30.0  # how long an operation waits for another process's lock on the file


class SqliteOnlineStore(OnlineStore):
    """The embedded online store (layout and guarantees: module docstring), for ``project``."""

    def __init__(self, path: str | Path, project: str, timeout: float = BUSY_SECONDS) -> None:
        super().__init__()
        self.path = Path(path)
        self.project = project
        self.location = f"sqlite:///{self.path}"
        self._lock = threading.Lock()
        self._db_timeout = timeout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=timeout, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._legacy = self._has_legacy_tables()
        except (OSError, sqlite3.Error) as exc:
            raise OnlineStoreUnavailable(
                f"cannot open the SQLite online store {self.path}: {exc}"
            ) from None

    def __repr__(self) -> str:
        return f"SqliteOnlineStore({str(self.path)!r}, project={self.project!r})"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This store's lock; a failure of SQLite itself (another process holding the file
        past the busy timeout, a full disk) is an ``OnlineStoreUnavailable`` naming the file."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise OnlineStoreUnavailable(
                    f"SQLite online store {self.path}: {exc}"
                    + (
                        f" (another process held it for {self._db_timeout:g} s; retry)"
                        if "locked" in str(exc)
                        else ""
                    )
                ) from None

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Cursor]:
        """One transaction on the shared connection (under this store's lock)."""
        with self._locked():
            cursor = self._db.cursor()
            cursor.execute(begin)
            try:
                yield cursor
                cursor.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    cursor.execute("ROLLBACK")
                raise
            finally:
                if self._legacy:  # a drop may have removed the old tables (if committed)
                    self._legacy = self._has_legacy_tables()

    def ping(self) -> None:
        with self._locked():
            self._db.execute("SELECT 1").fetchone()

    def claim(self, identity: ViewIdentity) -> Claim:
        with self._transaction() as cursor:
            found = cursor.execute(
                "SELECT generation, fingerprint, layout FROM views WHERE project = ? AND view = ?",
                (self.project, identity.view),
            ).fetchone()
            if found is not None and tuple(found[1:]) == (identity.fingerprint, identity.layout):
                return Claim(identity, found[0])
            self._drop(cursor, identity.view)
            cursor.execute(
                "INSERT INTO views (project, view, fingerprint, layout) VALUES (?, ?, ?, ?)",
                (self.project, identity.view, identity.fingerprint, identity.layout),
            )
            generation = cursor.lastrowid
        assert generation is not None  # an INSERT into a rowid table always sets it
        return Claim(identity, generation)

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
        keys = entity_keys(batch, join_keys)
        rows = codec.encode_batch(batch)
        generation = claim.generation
        with self._transaction() as cursor:
            holds = self._generation(cursor, claim.identity.view)
            if holds != generation:
                raise changed_under(claim, holds, self.location)
            cursor.executemany(
                UPSERT, ((generation, k, r) for k, r in zip(keys, rows, strict=True))
            )
            return cursor.rowcount

    def read(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        out: list[list[bytes | None]] = []
        # one read transaction: the generations and the rows come from the same snapshot
        with self._transaction("BEGIN") as cursor:
            for views, keys in groups:
                out += self._read_group(cursor, views, keys)
        return out

    def _read_group(
        self, cursor: sqlite3.Cursor, views: tuple[ViewIdentity, ...], keys: Sequence[str]
    ) -> list[list[bytes | None]]:
        """One group's rows; rows of a generation that is not the asked identity's are
        refused (counted), and a view with only data from before generations raises."""
        names = [v.view for v in views]
        held = {
            view: (generation, fingerprint, layout)
            for view, generation, fingerprint, layout in cursor.execute(
                "SELECT view, generation, fingerprint, layout FROM views WHERE project = ? "
                f"AND view IN ({','.join('?' * len(names))})",
                (self.project, *names),
            )
        }
        generations: list[int | None] = []  # per view: the generation to return rows of
        refused: dict[int, str] = {}  # generations whose rows are counted, not returned
        for v in views:
            found = held.get(v.view)
            if found is None:
                if (
                    self._legacy
                    and cursor.execute(
                        "SELECT 1 FROM rows WHERE view = ? LIMIT 1", (v.view,)
                    ).fetchone()
                ):
                    raise written_before_layouts(v.view, self.location)
                generations.append(None)
            elif found[1:] == (v.fingerprint, v.layout):
                generations.append(found[0])
            else:
                generations.append(None)
                refused[found[0]] = v.view
        wanted = [g for g in generations if g is not None] + list(refused)
        found_rows: dict[tuple[int, str], bytes] = {}
        if wanted:
            marks = ",".join("?" * len(wanted))
            step = MAX_VARIABLES - len(wanted)
            for i in range(0, len(keys), step):
                chunk = keys[i : i + step]
                sql = (
                    f"SELECT generation, entity, row FROM view_rows WHERE generation IN ({marks}) "
                    f"AND entity IN ({','.join('?' * len(chunk))})"
                )
                for generation, entity, row in cursor.execute(sql, (*wanted, *chunk)):
                    found_rows[generation, entity] = row
        for generation, view in refused.items():
            self._count_refused(view, sum((generation, key) in found_rows for key in keys))
        return [
            [None if g is None else found_rows.get((g, key)) for g in generations] for key in keys
        ]

    def write_tiles(
        self,
        claim: Claim,
        entity_keys: Sequence[str],
        tiles: Sequence[Sequence[tuple[TileId, bytes]]],
    ) -> int:
        generation = claim.generation
        with self._transaction() as cursor:
            holds = self._generation(cursor, claim.identity.view)
            if holds != generation:
                raise changed_under(claim, holds, self.location)
            cursor.executemany(
                UPSERT_TILE,
                (
                    (generation, key, level, number, row)
                    for key, key_tiles in zip(entity_keys, tiles, strict=True)
                    for (level, number), row in key_tiles
                ),
            )
            return cursor.rowcount

    def remove_tiles(self, claim: Claim, keep_from: Sequence[TileId]) -> int:
        removed = 0
        with self._transaction() as cursor:
            for level, first in keep_from:
                removed += cursor.execute(
                    "DELETE FROM view_tiles WHERE generation = ? AND level = ? AND tile < ?",
                    (claim.generation, level, first),
                ).rowcount
        return removed

    def read_tiles(
        self, groups: Sequence[KeyGroup], tile_reads: Sequence[TileRead]
    ) -> tuple[list[list[bytes | None]], list[TileAnswer]]:
        rows: list[list[bytes | None]] = []
        answers = []
        with self._transaction("BEGIN") as cursor:
            for views, keys in groups:
                rows += self._read_group(cursor, views, keys)
            for tile_read in tile_reads:
                answers.append(self._read_tiles(cursor, tile_read))
        return rows, answers

    def _read_tiles(self, cursor: sqlite3.Cursor, request: TileRead) -> TileAnswer:
        found = cursor.execute(
            "SELECT generation, fingerprint, layout, end_us FROM views "
            "WHERE project = ? AND view = ?",
            (self.project, request.view.view),
        ).fetchone()
        keys = list(request.entity_keys)
        if found is None:
            return TileAnswer(None, [[None] * len(request.tiles) for _ in keys])
        generation, fingerprint, layout, end_us = found
        if (fingerprint, layout) != (request.view.fingerprint, request.view.layout):
            refused = cursor.execute(
                f"SELECT count(*) FROM view_tiles WHERE generation = ? AND entity IN "
                f"({','.join('?' * len(keys))})",
                (generation, *keys),
            ).fetchone()[0]
            self._count_refused(request.view.view, refused)
            return TileAnswer(None, [[None] * len(request.tiles) for _ in keys])
        position = {tile: i for i, tile in enumerate(request.tiles)}
        by_level: dict[int, list[int]] = {}
        for level, number in request.tiles:
            by_level.setdefault(level, []).append(number)
        ranges = " OR ".join("(level = ? AND tile BETWEEN ? AND ?)" for _ in by_level)
        bounds = [x for lv, ns in by_level.items() for x in (lv, min(ns), max(ns))]
        out: list[list[bytes | None]] = [[None] * len(request.tiles) for _ in keys]
        index: dict[str, list[int]] = {}  # an entity key may be asked for several times
        for i, key in enumerate(keys):
            index.setdefault(key, []).append(i)
        step = MAX_VARIABLES - len(bounds) - 1
        distinct = list(index)
        for start in range(0, len(distinct), step):
            chunk = distinct[start : start + step]
            sql = (
                "SELECT entity, level, tile, row FROM view_tiles WHERE generation = ? AND "
                f"entity IN ({','.join('?' * len(chunk))}) AND ({ranges or 'FALSE'})"
            )
            for entity, level, number, row in cursor.execute(sql, (generation, *chunk, *bounds)):
                found = position.get((level, number))
                if found is not None:
                    for at in index[entity]:
                        out[at][found] = row
        end = None if end_us is None else from_us(end_us)
        return TileAnswer(end, out)

    def get_watermark(self, view: str) -> Watermark | None:
        with self._locked():
            found = self._db.execute(
                "SELECT end_us, max_created_us FROM views WHERE project = ? AND view = ?",
                (self.project, view),
            ).fetchone()
        return None if found is None else _watermark(*found)

    def set_watermark(self, claim: Claim, watermark: Watermark) -> None:
        created = None if watermark.max_created is None else timestamp_us(watermark.max_created)
        end = timestamp_us(watermark.end)
        with self._transaction() as cursor:
            # an end past the accepted range (an older version's) counts as its last moment
            cursor.execute(
                "UPDATE views SET end_us = ?, max_created_us = ? "
                "WHERE generation = ? AND (end_us IS NULL OR min(end_us, ?) <= ?)",
                (end, created, claim.generation, timestamp_us(MAX_TIME), end),
            )
            if cursor.rowcount:
                return
            holds = self._generation(cursor, claim.identity.view)
            if holds != claim.generation:  # the claim's generation is gone
                raise changed_under(claim, holds, self.location)
            # else a run with a later end already wrote its watermark: it stands

    def drop_view(self, view: str) -> int:
        with self._transaction() as cursor:  # rows and watermark go together, or neither
            return self._drop(cursor, view)

    def _generation(self, cursor: sqlite3.Cursor, view: str) -> int | None:
        found = cursor.execute(
            "SELECT generation FROM views WHERE project = ? AND view = ?", (self.project, view)
        ).fetchone()
        return None if found is None else found[0]

    def _drop(self, cursor: sqlite3.Cursor, view: str) -> int:
        """Delete the view's generation (rows, watermark) and its data from before
        generations, inside the caller's transaction; returns the rows removed."""
        removed = 0
        generation = self._generation(cursor, view)
        if generation is not None:
            removed = cursor.execute(
                "DELETE FROM view_rows WHERE generation = ?", (generation,)
            ).rowcount
            removed += cursor.execute(
                "DELETE FROM view_tiles WHERE generation = ?", (generation,)
            ).rowcount
            cursor.execute("DELETE FROM views WHERE generation = ?", (generation,))
        if self._legacy:
            removed += cursor.execute("DELETE FROM rows WHERE view = ?", (view,)).rowcount
            cursor.execute("DELETE FROM watermarks WHERE view = ?", (view,))
            if cursor.execute("SELECT 1 FROM rows LIMIT 1").fetchone() is None:
                cursor.execute("DROP TABLE rows")
                cursor.execute("DROP TABLE IF EXISTS watermarks")
        return removed

    def _has_legacy_tables(self) -> bool:
        """Whether the file holds data from before generations (the table ``rows``)."""
        found = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rows'"
        ).fetchone()
        return found is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _watermark(end_us: int | None, max_created_us: int | None) -> Watermark | None:
    if end_us is None:
        return None
    return Watermark(from_us(end_us), None if max_created_us is None else from_us(max_created_us))
