"""A repo where the consistency class of every logged row is known, by construction.

One entity ``user``, one view ``stats`` (ttl 1 day; ``x`` Float64, ``n`` Int64, ``s`` String;
a created-time column), on SQLite. ``build`` writes the source as it was first, materializes
it, then rewrites the source (later rows, a late correction, a changed value, a new key, a
deleted key), reads every user online at ``T0`` through the real reader and logs the answer
with the feature log's own writer (``log_table``); two rows are then edited in the log the
way no correct system writes them (a ttl disagreement each way). ``EXPECTED`` is each user's
class (None: a match).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestore import FeatureStore
from featurestore.feature_log import ONLINE_FEATURES, ServedRequest, log_table
from featurestore.online.response import OUTSIDE_MAX_AGE, PRESENT

T0 = datetime(2025, 1, 10, 12, tzinfo=UTC)
H = timedelta(hours=1)
US = timedelta(microseconds=1)
FEATURES = ["stats:x", "stats:n", "stats:s"]
COLUMNS = ["stats__x", "stats__n", "stats__s"]

DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, FileSource
from featurestore.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"])

stats = FeatureView(
    name="stats",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="x", dtype=Float64),
        Field(name="n", dtype=Int64),
        Field(name="s", dtype=String),
    ],
    source=FileSource(path="data/stats.parquet", timestamp_field="event_ts",
                      created_timestamp_column="created_ts"),
)

svc = FeatureService(name="svc", features=[stats])
"""

# user -> expected class of each of its features at T0 (None: served == replayed)
EXPECTED: dict[int, str | None] = {
    1: None,  # fresh row, materialized
    2: "stale-online",  # a newer row arrived after materialization (lag 4 h)
    3: "late-correction",  # corrected after materialization (as_of="event"; created: a match)
    4: "value-differs",  # the same row rewritten with other values
    5: "missing-online",  # a key that only arrived offline
    6: "online-newer",  # online holds a row from after the request
    7: "ttl-boundary",  # logged as OUTSIDE_MAX_AGE while offline has the row
    8: "online-only",  # deleted from the source after materialization
    9: "ttl-boundary",  # logged as PRESENT, 30 h old, where offline has none (ttl 1 day)
    10: None,  # nothing anywhere: NOT_FOUND and null (both null)
    11: None,  # a null value: NULL_VALUE and null (both null)
    12: None,  # exactly t - ttl old: inside both windows
    13: None,  # 1 µs older than t - ttl: OUTSIDE_MAX_AGE and null
}
STALE_LAG = 4 * H


def _row(user: int, event: datetime, created: datetime, x: float | None, n: int, s: str) -> dict:
    return {"user_id": user, "event_ts": event, "created_ts": created, "x": x, "n": n, "s": s}


FIRST = [
    _row(1, T0 - 2 * H, T0 - 2 * H, 1.5, 1, "a"),
    _row(2, T0 - 5 * H, T0 - 5 * H, 2.5, 2, "b"),
    _row(3, T0 - 6 * H, T0 - 6 * H, 3.5, 3, "c"),
    _row(4, T0 - 4 * H, T0 - 4 * H, 4.5, 4, "d"),
    _row(6, T0 - 3 * H, T0 - 3 * H, 6.0, 6, "f"),
    _row(6, T0 + 2 * H, T0 - 3 * H, 6.5, 60, "F"),  # an event time after the request
    _row(7, T0 - 2 * H, T0 - 2 * H, 7.5, 7, "g"),
    _row(8, T0 - 2 * H, T0 - 2 * H, 8.5, 8, "h"),
    _row(9, T0 - 30 * H, T0 - 30 * H, 9.5, 9, "i"),
    _row(11, T0 - 2 * H, T0 - 2 * H, None, 11, "k"),
    _row(12, T0 - 24 * H, T0 - 24 * H, 12.5, 12, "l"),
    _row(13, T0 - 24 * H - US, T0 - 24 * H, 13.5, 13, "m"),
]
LATER = [
    _row(2, T0 - 1 * H, T0 - 1 * H, 2.75, 22, "B"),
    _row(3, T0 - 6 * H, T0 + 1 * H, 3.75, 33, "C"),  # the correction, known after T0
    _row(5, T0 - 4 * H, T0 - 4 * H, 5.5, 5, "e"),
]


def _write_source(path: Path, rows: list[dict]) -> None:
    utc = pa.timestamp("us", tz="UTC")
    schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("event_ts", utc),
            ("created_ts", utc),
            ("x", pa.float64()),
            ("n", pa.int64()),
            ("s", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema), path)


def build(root: Path) -> Path:
    """Write, materialize, change, read and log (module docstring); returns the repo."""
    repo = root / "class_repo"
    (repo / "data").mkdir(parents=True)
    (repo / "featurestore.yaml").write_text(
        "project: classes\nregistry: data/registry.json\n"
        "online_store: {type: sqlite, path: data/online.db}\n"
        "feature_log: {path: data/feature_log}\n"
    )
    (repo / "definitions.py").write_text(DEFINITIONS)
    source = repo / "data" / "stats.parquet"
    _write_source(source, FIRST)
    store = FeatureStore(repo)
    store.apply()
    store.materialize(T0 - 40 * H, T0 + 3 * H)

    rewritten = [dict(r) for r in FIRST if r["user_id"] != 8]  # user 8 deleted offline
    for r in rewritten:
        if r["user_id"] == 4:  # same event and created time, other values
            r.update(x=40.5, n=40, s="D")
    _write_source(source, rewritten + LATER)

    users = sorted(EXPECTED)
    table = log_table([served_request(store, users)])
    store.close()
    table = _edit_status(table, users.index(7), OUTSIDE_MAX_AGE, keep_value=False)
    table = _edit_status(table, users.index(9), PRESENT, keep_value=True, values=FIRST[8])
    write_log(repo, table, "constructed")
    return repo


def served_request(
    store: FeatureStore, users: list[int], now: datetime = T0, **fields: object
) -> ServedRequest:
    """The real online answer for ``users`` at ``now``, as the service would log it;
    ``fields`` set the rest (endpoint, service, model, model_fingerprint, predictions...)."""
    response = store.get_online_features(
        FEATURES, {"user_id": users}, full_feature_names=True, now=now
    )
    return ServedRequest(
        **{  # type: ignore[arg-type]
            "request_id": "req-1",
            "request_us": (now - datetime(1970, 1, 1, tzinfo=UTC)) // US,
            "endpoint": ONLINE_FEATURES,
            "response": response,
            "columns": {name: name for name in response.feature_names},
            **fields,
        }
    )


def write_log(repo: Path, table: pa.Table, name: str) -> Path:
    """Write ``table`` (rows of one UTC day) as a log file of ``repo``, where the writer would."""
    day = table["request_ts"][0].as_py()
    folder = repo / "data" / "feature_log" / f"date={day:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"part-{name}.parquet")
    return folder / f"part-{name}.parquet"


def _edit_status(
    table: pa.Table, row: int, status: str, *, keep_value: bool, values: dict | None = None
) -> pa.Table:
    """Set one row's status (and value: null, or ``values``' column) for every feature."""
    import numpy as np

    at = np.arange(table.num_rows) == row
    for column in COLUMNS:
        name = column.split("__")[1]
        index = table.schema.get_field_index(f"{column}__status")
        table = table.set_column(
            index,
            f"{column}__status",
            pc.if_else(pa.array(at), pa.scalar(status), table[f"{column}__status"]),
        )
        new = values[name] if keep_value and values else None
        index = table.schema.get_field_index(column)
        typed = pa.scalar(new, table.schema.field(column).type)
        table = table.set_column(index, column, pc.if_else(pa.array(at), typed, table[column]))
    return table
