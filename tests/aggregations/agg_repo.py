"""A small repo with an aggregated view beside a plain one, for the online tests.

``user_txn`` aggregates ``data/txn.parquet`` (user_id, ts, created_ts, amount, qty) with
count / sum / mean / max over 1 h, 1 d and 7 d, and a ttl of 2 hours (its maximum
staleness); ``user_profile`` is a plain view; the service ``scoring`` reads both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday, midnight
TS = pa.timestamp("us", tz="UTC")

DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, FileSource
from featurestore.definitions import Aggregation
from featurestore.types import Float64, Int64

user = Entity(name="user", join_keys=["user_id"])
user_txn = FeatureView(
    name="user_txn",
    entities=[user],
    ttl=timedelta(hours=2),
    source=FileSource(path="data/txn.parquet", timestamp_field="ts", created_timestamp_column="created_ts"),
    aggregations=[
        Aggregation(column=column, function=function, time_window=window)
        for column, function in (("amount", "count"), ("amount", "sum"), ("amount", "mean"), ("amount", "max"), ("qty", "sum"))
        for window in (timedelta(hours=1), timedelta(days=1), timedelta(days=7))
    ],
)
user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    schema=[Field(name="user_id", dtype=Int64), Field(name="score", dtype=Float64)],
    source=FileSource(path="data/profile.parquet", timestamp_field="ts"),
)
scoring = FeatureService(name="scoring", features=[user_txn, user_profile])
"""


def write_txn(
    path: Path,
    rows: list[tuple[int, datetime, float | None, int | None]],
    created: timedelta = timedelta(0),
) -> None:
    """The transactions file: (user_id, ts, amount, qty) rows, created ``created`` after ts."""
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([r[0] for r in rows], pa.int64()),
                "ts": pa.array([r[1] for r in rows], TS),
                "created_ts": pa.array([r[1] + created for r in rows], TS),
                "amount": pa.array([r[2] for r in rows], pa.float64()),
                "qty": pa.array([r[3] for r in rows], pa.int64()),
            }
        ),
        path,
    )


def make_repo(
    path: Path, online: str, rows: list[tuple[int, datetime, float | None, int | None]]
) -> FeatureStore:
    """Write the repo under ``path`` with ``online`` as its online_store line, apply it."""
    (path / "data").mkdir(parents=True, exist_ok=True)
    (path / "featurestore.yaml").write_text(
        f"project: aggs\nregistry: data/registry.json\n{online}\n"
    )
    (path / "features.py").write_text(DEFINITIONS)
    write_txn(path / "data" / "txn.parquet", rows)
    pq.write_table(
        pa.table({"user_id": pa.array([1], pa.int64()), "ts": pa.array([T0], TS), "score": [0.5]}),
        path / "data" / "profile.parquet",
    )
    store = FeatureStore(path)
    store.apply()
    return store


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def online_dict(store: FeatureStore, features: Any, users: list[int], now: datetime) -> Any:
    return store.get_online_features(
        features=features, entity_rows=[{"user_id": u} for u in users], now=now
    )
