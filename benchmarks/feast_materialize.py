"""Time Feast 0.67's ``materialize`` into a Redis server; runs under Feast's own venv.

Run by benchmarks/bench_materialize.py as ``.venv-feast/bin/python feast_materialize.py JOB.json``
(Feast pins pandas < 3 and redis-py < 8, which conflict with ours), never imported by it.
A job::

    {"workdir": "/tmp/.../feast",              # a fresh folder for Feast's registry
     "redis": "127.0.0.1:6380",                # Feast's connection_string (host:port)
     "start": "2025-01-01T00:00:00+00:00", "end": "2025-02-01T00:00:00+00:00",
     "views": [{"name": "driver_hourly_stats", "source": "/tmp/.../hourly.parquet",
                "key": "driver_id",
                "features": [{"name": "conv_rate", "dtype": "Float32"}, ...]}]}

Every view is keyed by the one Int64 key, with ``event_timestamp`` and ``created`` columns,
read through Feast's DuckDB offline store (its fastest here). Prints one JSON line:
``{"seconds": S}``, the time of ``store.materialize(start, end)`` alone.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

os.environ.setdefault("FEAST_USAGE", "False")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from feast import Entity, FeatureStore, FeatureView, Field, FileSource  # noqa: E402
from feast import types as feast_types  # noqa: E402
from feast.repo_config import RegistryConfig, RepoConfig  # noqa: E402


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(
        config=RepoConfig(
            project="bench",
            provider="local",
            registry=RegistryConfig(path=str(workdir / "registry.db"), cache_ttl_seconds=0),
            offline_store={"type": "duckdb"},
            online_store={"type": "redis", "connection_string": job["redis"]},
            entity_key_serialization_version=3,
            repo_path=str(workdir),
        )
    )
    objects: list[object] = []
    entities: dict[str, Entity] = {}
    for spec in job["views"]:
        key = spec["key"]
        entity = entities.setdefault(key, Entity(name=key, join_keys=[key]))
        objects.append(
            FeatureView(
                name=spec["name"],
                entities=[entity],
                ttl=timedelta(days=1),
                schema=[Field(name=key, dtype=feast_types.Int64)]
                + [
                    Field(name=f["name"], dtype=getattr(feast_types, f["dtype"]))
                    for f in spec["features"]
                ],
                source=FileSource(
                    name=f"{spec['name']}_source",
                    path=spec["source"],
                    timestamp_field="event_timestamp",
                    created_timestamp_column="created",
                ),
                online=True,
            )
        )
    store.apply([*entities.values(), *objects])
    start = datetime.fromisoformat(job["start"])
    end = datetime.fromisoformat(job["end"])
    began = time.perf_counter()
    store.materialize(start, end)
    print(json.dumps({"seconds": time.perf_counter() - began}))


if __name__ == "__main__":
    main(sys.argv[1])
