"""A small repo with a request-time view and a push source, written as real files.

``stats`` (user_id, ttl 1 day): avg Float64, cnt Int64, tag String; its source is the push
source ``stats_push`` over the folder ``data/stats`` (event ``ts``, created ``created``).
``txn`` is a request source (amount Float64). ``scored`` (the on-demand view, replaceable
with ``odfv=``) reads ``stats[["avg", "cnt"]]`` and ``amount``: ratio = amount / avg (Float64),
r32 = avg * 3 (Float32). Service ``svc``: ``stats:cnt`` and ``scored``.

Rows (event time, created time): user 1 at T0 (avg 10) and T0+1h (avg 20); user 2 at T0
(avg 0.1); user 3 at T0 - 3 days (outside the ttl at T0+1h). ``T0`` is 2024-01-01.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)
BASE = """\
from datetime import timedelta

import pandas as pd

from featurestore import (
    Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource,
    on_demand_feature_view,
)
from featurestore.types import Bool, Float32, Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"])
stats = FeatureView(
    name="stats",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[Field(name="avg", dtype=Float64), Field(name="cnt", dtype=Int64),
            Field(name="tag", dtype=String)],
    source=PushSource(
        name="stats_push",
        batch_source=FileSource(path="data/stats", timestamp_field="ts",
                                created_timestamp_column="created"),
    ),
)
txn = RequestSource(name="txn", schema=[Field(name="amount", dtype=Float64)])
"""
ODFV = """
@on_demand_feature_view(
    sources=[stats[["avg", "cnt"]], txn],
    schema=[Field(name="ratio", dtype=Float64), Field(name="r32", dtype=Float32)],
)
def scored(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=inputs.index)
    out["ratio"] = inputs["amount"] / inputs["avg"]
    out["r32"] = inputs["stats__avg"] * 3
    return out
"""
SERVICE = """
svc = FeatureService(name="svc", features=[stats[["cnt"]], scored])
"""


def write_repo(path: Path, odfv: str = ODFV, online: str | None = None) -> FeatureStore:
    """Write the repo under ``path`` (not applied); ``online``: a Redis URL, else SQLite."""
    data = path / "data" / "stats"
    data.mkdir(parents=True, exist_ok=True)
    hour = timedelta(hours=1)
    times = [T0, T0 + hour, T0, T0 - timedelta(days=3)]
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([1, 1, 2, 3], pa.int64()),
                "ts": pa.array(times, pa.timestamp("us", tz="UTC")),
                "created": pa.array([t + hour for t in times], pa.timestamp("us", tz="UTC")),
                "avg": [10.0, 20.0, 0.1, 5.0],
                "cnt": pa.array([1, 2, 3, 4], pa.int64()),
                "tag": ["a", "b", "c", "d"],
            }
        ),
        data / "part-0.parquet",
    )
    store_line = (
        f"online_store: {{type: redis, url: '{online}'}}"
        if online
        else "online_store: {type: sqlite, path: data/online.db}"
    )
    (path / "featurestore.yaml").write_text(
        "project: transforms\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
        f"{store_line}\nfeature_log: {{path: data/feature_log}}\n"
    )
    write_definitions(path, odfv)
    return FeatureStore(path)


def write_definitions(path: Path, odfv: str = ODFV, service: str = SERVICE) -> None:
    """(Re)write the repo's definitions file with another on-demand view (or service)."""
    (path / "definitions.py").write_text(BASE + odfv + service)
