"""The online tests' repo: definitions, empty sources, and a helper writing rows online.

Views: ``user_stats`` (ttl 1 day) and ``user_profile`` (no ttl) keyed by the Int64
``user_id``; ``merchant_risk`` (ttl 1 hour) keyed by the String ``merchant_id``; ``pair``
keyed by both; ``archive`` offline only. Service ``scoring``. Rows are written straight
through ``OnlineStore.claim`` and ``write_rows``, as a materialization run of the applied
definition would (materialization has its own tests).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore
from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.online.base import OnlineStore, ViewIdentity

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")

DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, FileSource
from featurestore.types import Bool, Float32, Float64, Int64, String, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"])
merchant = Entity(name="merchant", join_keys=["merchant_id"])


def source(name):
    return FileSource(
        path=f"data/{name}.parquet", timestamp_field="event_ts", created_timestamp_column="created_ts"
    )


user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="amount", dtype=Float32),
        Field(name="count", dtype=Int64),
        Field(name="city", dtype=String),
    ],
    source=source("user_stats"),
)
user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="score", dtype=Float64),
        Field(name="verified", dtype=Bool),
        Field(name="signup", dtype=UnixTimestamp),
    ],
    source=source("user_profile"),
)
merchant_risk = FeatureView(
    name="merchant_risk",
    entities=[merchant],
    ttl=timedelta(hours=1),
    schema=[
        Field(name="merchant_id", dtype=String),
        Field(name="risk", dtype=Float64),
        Field(name="city", dtype=String),
    ],
    source=source("merchant_risk"),
)
pair = FeatureView(
    name="pair",
    entities=[user, merchant],
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="merchant_id", dtype=String),
        Field(name="txn_count", dtype=Int64),
    ],
    source=source("pair"),
)
archive = FeatureView(
    name="archive",
    entities=[user],
    online=False,
    schema=[Field(name="user_id", dtype=Int64), Field(name="old", dtype=Float64)],
    source=source("archive"),
)
scoring = FeatureService(name="scoring", features=[user_stats, user_profile[["score"]]])
"""

SOURCE_SCHEMAS: dict[str, dict[str, pa.DataType]] = {
    "user_stats": {
        "user_id": pa.int64(),
        "amount": pa.float32(),
        "count": pa.int64(),
        "city": pa.string(),
    },
    "user_profile": {
        "user_id": pa.int64(),
        "score": pa.float64(),
        "verified": pa.bool_(),
        "signup": TS,
    },
    "merchant_risk": {"merchant_id": pa.string(), "risk": pa.float64(), "city": pa.string()},
    "pair": {"user_id": pa.int64(), "merchant_id": pa.string(), "txn_count": pa.int64()},
    "archive": {"user_id": pa.int64(), "old": pa.float64()},
}


def write_repo(path: Path, online: str) -> Path:
    """Write the repo's files: definitions, config with ``online`` as the online store, sources."""
    (path / "data").mkdir(parents=True, exist_ok=True)
    (path / "definitions.py").write_text(DEFINITIONS)
    (path / "featurestore.yaml").write_text(
        f"project: shop\nregistry: data/registry.json\noffline_store: {{type: duckdb}}\n"
        f"online_store: {online}\n"
    )
    for name, schema in SOURCE_SCHEMAS.items():
        columns = {c: pa.array([], t) for c, t in schema.items()}
        columns |= {"event_ts": pa.array([], TS), "created_ts": pa.array([], TS)}
        pq.write_table(pa.table(columns), path / "data" / f"{name}.parquet")
    return path


def put(
    store: OnlineStore,
    fs: FeatureStore,
    view: str,
    rows: list[dict[str, Any]],
) -> int:
    """Write rows (join keys, features, ``event_ts``, optional ``created_ts``) into ``view``."""
    state = fs.state
    record = state.view_record(view)
    columns: dict[str, pa.Array] = {}
    for key in record.view.join_keys:
        columns[key] = pa.array([r[key] for r in rows], record.key_dtypes[key].to_arrow())
    for f in record.view.features:
        columns[f.name] = pa.array([r.get(f.name) for r in rows], f.dtype.to_arrow())
    columns[EVENT_TS] = pa.array([r["event_ts"] for r in rows], TS)
    columns[CREATED_TS] = pa.array([r.get("created_ts") for r in rows], TS)
    batch = pa.RecordBatch.from_pydict(columns)
    claim = store.claim(ViewIdentity.of(record))
    return store.write_rows(claim, batch, list(record.view.join_keys), list(record.view.features))
