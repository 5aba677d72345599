"""What the reports read from the feature log: the rows of a time window, and which feature
columns they hold (featurestore/feature_log.py defines the schema; only that schema is read).

A window is ``since <= request_ts < until`` (either bound optional; naive means UTC). An empty
log, a window without rows and a log of another schema version are ``ReportError``s that say
what the log does hold. ``other_definitions`` finds the rows read with view definitions the
registry no longer holds, which neither report may compare with today's definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.errors import ReportError
from featurestore.feature_log import LOG_VERSION, VERSION_KEY, log_files, read_log

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from featurestore.registry_state import RegistryState

STATUS = "__status"
EVENT_TS = "__event_ts"
CREATED_TS = "__created_ts"


@dataclass(frozen=True)
class Window:
    """``since <= request_ts < until``; None leaves that side open."""

    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        from featurestore.types import check_time

        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_time(value, name, ReportError))
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ReportError(
                f"the window is empty: since {self.since.isoformat()} is not before until "
                f"{self.until.isoformat()} (since is inclusive, until exclusive)"
            )

    def describe(self) -> str:
        since = self.since.isoformat() if self.since else "the start"
        until = self.until.isoformat() if self.until else "the end"
        return f"from {since} (inclusive) to {until} (exclusive)"

    def to_json(self) -> dict[str, str | None]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def read_window(path: Path, window: Window, columns: list[str] | None = None) -> pa.Table:
    """The log rows in ``window`` (all columns, or ``columns``), refusing an empty log, an
    empty window and another schema version, each with a message saying what there is."""
    import pyarrow.compute as pc

    files = log_files(path)
    if not files:
        raise ReportError(
            f"the feature log at {path} is empty (no Parquet file): serve requests first "
            "('featurestore serve'), or check feature_log.path in featurestore.yaml"
        )
    table = read_log(path, since=window.since, until=window.until, columns=columns)
    version = (table.schema.metadata or {}).get(VERSION_KEY, LOG_VERSION.encode()).decode()
    if version != LOG_VERSION:
        raise ReportError(
            f"the feature log at {path} has schema version {version}; this featurestore "
            f"reads version {LOG_VERSION}"
        )
    if table.num_rows == 0:
        everything = read_log(path, columns=["request_ts"])
        span = (
            f"its {everything.num_rows:,} rows run from "
            f"{pc.min(everything['request_ts']).as_py().isoformat()} to "
            f"{pc.max(everything['request_ts']).as_py().isoformat()}"
            if everything.num_rows
            else "it holds no rows"
        )
        raise ReportError(
            f"the feature log at {path} has no rows {window.describe()}: {span}; "
            "change --since/--until"
        )
    return table


def feature_columns(schema: pa.Schema) -> list[str]:
    """The logged feature columns (``view__feature``: those with a ``__status`` beside them),
    in the log's order."""
    names = set(schema.names)
    return [
        name
        for name in schema.names
        if not name.endswith((STATUS, EVENT_TS, CREATED_TS)) and f"{name}{STATUS}" in names
    ]


def log_column(ref: str) -> str:
    """The log column of feature reference ``view:feature``."""
    view, feature = ref.split(":")
    return f"{view}__{feature}"


def served_rows(table: pa.Table, column: str) -> pa.Array:
    """Whether each row served ``column`` (its status is set): a boolean array."""
    import pyarrow.compute as pc

    return pc.is_valid(table[f"{column}{STATUS}"]).combine_chunks()


def rows_without(path: Path, table: pa.Table, column: str) -> np.ndarray:
    """Which rows of ``table`` (read from the log at ``path``) were read from files that have
    no ``column`` (written before the log recorded it; null after the union): a boolean
    array. A request's rows are written together (one file), so its ``request_id`` and
    ``request_ts`` name its file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = [f for f in log_files(path) if column not in pq.read_schema(f).names]
    if not files:
        return np.zeros(table.num_rows, bool)
    old = pa.concat_tables([pq.read_table(f, columns=["request_id", "request_ts"]) for f in files])

    def requests(t: pa.Table) -> pa.ChunkedArray:
        stamp = pc.cast(pc.cast(t["request_ts"], pa.int64()), pa.string())
        return pc.binary_join_element_wise(t["request_id"], stamp, "@")

    found = pc.is_in(requests(table), value_set=requests(old).combine_chunks())
    return np.asarray(found.to_numpy(zero_copy_only=False), bool)


@dataclass(frozen=True)
class OtherDefinitions:
    """The logged rows read with definitions the registry no longer holds (the log's
    ``definitions`` column, ``view:fingerprint`` of every view a read used): ``rows`` of
    them, marked in ``mask``, read with other definitions of ``views``."""

    rows: int
    views: tuple[str, ...]
    mask: pa.Array

    def describe(self) -> str:
        return (
            f"{self.rows:,} logged rows were read with definitions of "
            f"{', '.join(repr(v) for v in self.views)} that the registry no longer holds (an "
            "apply changed or removed them)"
        )


def other_definitions(log: pa.Table, state: RegistryState) -> OtherDefinitions:
    """Which rows of ``log`` were read with definitions the registry no longer holds: an
    apply changed (or removed) a view since, so its values then were computed by other
    definitions than today's offline ones. Rows logged before the log recorded definitions
    (null) count as current: nothing tells otherwise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "definitions" not in log.column_names:
        return OtherDefinitions(0, (), pa.array([False] * log.num_rows))
    current = {name: r.fingerprint[:12] for name, r in state.views.items()}
    current |= {name: r.fingerprint[:12] for name, r in state.on_demand.items()}
    stale, views = [], set()
    for read in log["definitions"].unique().drop_null().to_pylist():
        pairs = [item.rsplit(":", 1) for item in read.split(",") if item]
        changed = {view for view, fingerprint in pairs if current.get(view) != fingerprint}
        if changed:
            stale.append(read)
            views |= changed
    mask = pc.fill_null(pc.is_in(log["definitions"], value_set=pa.array(stale, pa.string())), False)
    mask = mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
    return OtherDefinitions(pc.sum(mask).as_py() or 0, tuple(sorted(views)), mask)
