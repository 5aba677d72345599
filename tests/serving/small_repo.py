"""A small repo of single-key views with every dtype and awkward values, fresh (relative to
now), and a tiny model on it: for JSON encoding edge cases and Feast's own HTTP client.

``profile`` (ttl 7 days): score32 Float32, score64 Float64, n Int32, big Int64, country
String, verified Bool, some nulls. ``odd`` (no ttl): weird Float64 and weird32 Float32
holding NaN, infinities and -0.0, seen UnixTimestamp. Service ``small_svc`` reads both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore, models

USERS = 60
DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, FileSource
from featurestore.types import Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"])

profile = FeatureView(
    name="profile",
    entities=[user],
    ttl=timedelta(days=7),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="score32", dtype=Float32),
        Field(name="score64", dtype=Float64),
        Field(name="n", dtype=Int32),
        Field(name="big", dtype=Int64),
        Field(name="country", dtype=String),
        Field(name="verified", dtype=Bool),
    ],
    source=FileSource(path="data/profile.parquet", timestamp_field="event_ts",
                      created_timestamp_column="created_ts"),
)

odd = FeatureView(
    name="odd",
    entities=[user],
    ttl=None,
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="weird", dtype=Float64),
        Field(name="weird32", dtype=Float32),
        Field(name="seen", dtype=UnixTimestamp),
    ],
    source=FileSource(path="data/odd.parquet", timestamp_field="event_ts"),
)

small_svc = FeatureService(name="small_svc", features=[profile, odd])
"""
WEIRD = [float("nan"), float("inf"), float("-inf"), -0.0, 1e-300, 0.1]


def write_small_repo(root: Path, redis_url: str) -> tuple[Path, Path]:
    """Write, apply, train (tiny), materialize; returns (repo, model)."""
    rng = np.random.default_rng(1)
    repo = root / "small_repo"
    data = repo / "data"
    data.mkdir(parents=True)
    (repo / "featurestore.yaml").write_text(
        "project: small\nregistry: data/registry.json\n"
        f"online_store: {{type: redis, url: '{redis_url}'}}\n"
        "feature_log: {path: data/feature_log}\n"
    )
    (repo / "definitions.py").write_text(DEFINITIONS)
    now = datetime.now(UTC).replace(microsecond=0)
    users = np.arange(1, USERS + 1, dtype=np.int64)
    event = [now - timedelta(hours=int(h)) for h in rng.integers(1, 48, USERS)]
    timestamp = pa.timestamp("us", tz="UTC")
    score = rng.normal(size=USERS)
    nulls = rng.random(USERS) < 0.1
    pq.write_table(
        pa.table(
            {
                "user_id": users,
                "event_ts": pa.array(event, timestamp),
                "created_ts": pa.array([e + timedelta(minutes=5) for e in event], timestamp),
                "score32": pa.array(score.astype(np.float32), mask=nulls),
                "score64": pa.array(score * 3.3, mask=nulls),
                "n": pa.array(rng.integers(-5, 50, USERS).astype(np.int32)),
                "big": pa.array(rng.integers(-(2**62), 2**62, USERS)),
                "country": pa.array(rng.choice(["DE", "FR", 'Ünïcode "q" \\ 東京'], USERS)),
                "verified": pa.array(rng.random(USERS) < 0.5),
            }
        ),
        data / "profile.parquet",
    )
    weird = [WEIRD[i % len(WEIRD)] for i in range(USERS)]
    pq.write_table(
        pa.table(
            {
                "user_id": users,
                "event_ts": pa.array([now - timedelta(days=1)] * USERS, timestamp),
                "weird": pa.array(weird, pa.float64()),
                "weird32": pa.array(weird, pa.float32()),
                "seen": pa.array([now - timedelta(seconds=int(s)) for s in users], timestamp),
            }
        ),
        data / "odd.parquet",
    )
    store = FeatureStore(repo)
    store.apply()
    labels = pd.DataFrame(
        {
            "user_id": np.tile(users, 5),
            "event_timestamp": now,
            "is_fraud": (np.tile(score, 5) + rng.normal(size=5 * USERS) > 0.5).astype(int),
        }
    )
    labels["event_timestamp"] = [now - timedelta(minutes=int(m)) for m in range(len(labels))]
    models.train(
        repo,
        service="small_svc",
        entities=labels,
        label="is_fraud",
        out=root / "small_model",
        num_boost_round=3,
        threads=1,
        progress=False,
    )
    store.materialize(now - timedelta(days=30), datetime.now(UTC))
    return repo, root / "small_model"
