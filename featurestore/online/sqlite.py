"""The embedded online store: one SQLite file (WAL), the default when no Redis is configured.

Layout::

    rows        (view TEXT, entity TEXT, row BLOB, PRIMARY KEY (view, entity)) WITHOUT ROWID
    watermarks  (view TEXT PRIMARY KEY, end_us INTEGER, max_created_us INTEGER)

``entity`` is the canonical entity key and ``row`` the codec row, as in Redis. Never regress
is one upsert: ``ON CONFLICT DO UPDATE ... WHERE substr(excluded.row, 1, 16) >=
substr(rows.row, 1, 16)`` — SQLite compares BLOBs with memcmp, and the codec's 16-byte prefix
orders exactly like (event_ts, created_ts). A batch is one transaction. ``drop_view`` is one
transaction: a DELETE over the primary key's ``view`` prefix and the watermark's. The file holds one project's data.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.errors import OnlineStoreUnavailable
from featurestore.online.base import KeyGroup, OnlineStore, Watermark
from featurestore.online.codec import RowCodec, entity_keys, from_us, timestamp_us

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.definitions import Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    view TEXT NOT NULL,
    entity TEXT NOT NULL,
    row BLOB NOT NULL,
    PRIMARY KEY (view, entity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watermarks (
    view TEXT PRIMARY KEY,
    end_us INTEGER NOT NULL,
    max_created_us INTEGER
);
"""

UPSERT = """
INSERT INTO rows (view, entity, row) VALUES (?, ?, ?)
ON CONFLICT (view, entity) DO UPDATE SET row = excluded.row
WHERE substr(excluded.row, 1, 16) >= substr(rows.row, 1, 16)
"""

MAX_VARIABLES = 30_000  # below SQLite's default limit of 32,766 bound parameters


class SqliteOnlineStore(OnlineStore):
    """The embedded online store (layout and never-regress rule: module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = f"sqlite:///{self.path}"
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OnlineStoreUnavailable(
                f"cannot open the SQLite online store {self.path}: {exc}"
            ) from None

    def __repr__(self) -> str:
        return f"SqliteOnlineStore({str(self.path)!r})"

    def ping(self) -> None:
        with self._lock:
            try:
                self._db.execute("SELECT 1").fetchone()
            except sqlite3.Error as exc:
                raise OnlineStoreUnavailable(f"SQLite online store {self.path}: {exc}") from None

    def write_rows(
        self, view: str, batch: pa.RecordBatch, join_keys: Sequence[str], features: Sequence[Field]
    ) -> int:
        if batch.num_rows == 0:
            return 0
        keys = entity_keys(batch, join_keys)
        rows = RowCodec(features).encode_batch(batch)
        with self._lock:
            cursor = self._db.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                cursor.executemany(UPSERT, ((view, k, r) for k, r in zip(keys, rows, strict=True)))
                written = cursor.rowcount
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        return written

    def read(self, groups: Sequence[KeyGroup]) -> list[list[bytes | None]]:
        out: list[list[bytes | None]] = []
        with self._lock:
            for views, keys in groups:
                found: dict[tuple[str, str], bytes] = {}
                view_marks = ",".join("?" * len(views))
                step = MAX_VARIABLES - len(views)
                for i in range(0, len(keys), step):
                    chunk = keys[i : i + step]
                    sql = (
                        f"SELECT view, entity, row FROM rows WHERE view IN ({view_marks}) "
                        f"AND entity IN ({','.join('?' * len(chunk))})"
                    )
                    for view, entity, row in self._db.execute(sql, (*views, *chunk)):
                        found[view, entity] = row
                out += [[found.get((view, key)) for view in views] for key in keys]
        return out

    def get_watermark(self, view: str) -> Watermark | None:
        with self._lock:
            found = self._db.execute(
                "SELECT end_us, max_created_us FROM watermarks WHERE view = ?", (view,)
            ).fetchone()
        if found is None:
            return None
        end, created = found
        return Watermark(from_us(end), None if created is None else from_us(created))

    def set_watermark(self, view: str, watermark: Watermark) -> None:
        created = None if watermark.max_created is None else timestamp_us(watermark.max_created)
        with self._lock:
            self._db.execute(
                "INSERT INTO watermarks (view, end_us, max_created_us) VALUES (?, ?, ?) "
                "ON CONFLICT (view) DO UPDATE SET end_us = excluded.end_us, "
                "max_created_us = excluded.max_created_us",
                (view, timestamp_us(watermark.end), created),
            )

    def drop_view(self, view: str) -> int:
        with self._lock:
            cursor = self._db.cursor()
            cursor.execute("BEGIN IMMEDIATE")  # rows and watermark go together, or neither
            try:
                removed = cursor.execute("DELETE FROM rows WHERE view = ?", (view,)).rowcount
                cursor.execute("DELETE FROM watermarks WHERE view = ?", (view,))
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        return removed

    def close(self) -> None:
        with self._lock:
            self._db.close()
