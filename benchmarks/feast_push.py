"""Time Feast 0.67's ``push`` into Redis (and its DuckDB offline store); runs under Feast's
own venv (run by benchmarks/bench_push.py, never imported by it).

A job: ``{"workdir", "redis": "127.0.0.1:port", "source": "/tmp/.../hourly.parquet",
"batches": {"1": "/tmp/.../batch-1.parquet", ...}, "pushes": {"1": 200, ...},
"modes": ["online", "online_and_offline"]}``. One view over a ``PushSource`` whose batch
source is ``source`` (driver_id, event_timestamp, created, conv_rate, acc_rate,
avg_daily_trips). For each mode and batch size it pushes the batch ``pushes[size]`` times
(after 3 warm-up pushes) and prints one JSON line per measurement: rows, seconds, CPU seconds.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource
from feast.data_source import PushMode
from feast.repo_config import RegistryConfig, RepoConfig
from feast.types import Float32, Int64

MODES = {"online": PushMode.ONLINE, "online_and_offline": PushMode.ONLINE_AND_OFFLINE}


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "hourly.parquet"
    shutil.copy(job["source"], source)  # Feast rewrites it on offline pushes
    store = FeatureStore(
        config=RepoConfig(
            project="bench_push",
            provider="local",
            registry=RegistryConfig(path=str(workdir / "registry.db"), cache_ttl_seconds=60),
            offline_store={"type": "duckdb"},
            online_store={"type": "redis", "connection_string": job["redis"]},
            entity_key_serialization_version=3,
            repo_path=str(workdir),
        )
    )
    driver = Entity(name="driver_id", join_keys=["driver_id"])
    push_source = PushSource(
        name="hourly_push",
        batch_source=FileSource(
            name="hourly_source",
            path=str(source),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        ),
    )
    view = FeatureView(
        name="driver_hourly_stats",
        entities=[driver],
        ttl=timedelta(days=1),
        schema=[
            Field(name="driver_id", dtype=Int64),
            Field(name="conv_rate", dtype=Float32),
            Field(name="acc_rate", dtype=Float32),
            Field(name="avg_daily_trips", dtype=Int64),
        ],
        source=push_source,
    )
    store.apply([driver, push_source, view])
    for mode in job["modes"]:
        for size, path in job["batches"].items():
            batch = pd.read_parquet(path)
            for _ in range(3):
                store.push("hourly_push", batch, to=MODES[mode])
            count = job["pushes"][size]
            began, cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                store.push("hourly_push", batch, to=MODES[mode])
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            line = {"mode": mode, "size": size, "rows": count * len(batch), "seconds": seconds,
                    "cpu": cpu}  # fmt: skip
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
