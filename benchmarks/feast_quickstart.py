"""Feast's side of the Redis benchmarks: one Feast repo over the benchmark's Parquet sources.

Imported by feast_materialize.py and feast_online_sdk.py, which run under Feast's own venv
(.venv-feast: Feast pins pandas < 3 and redis-py < 8); never imported by our side. A job
names the sources::

    {"workdir": "/tmp/.../feast", "redis": "127.0.0.1:6380", "key": "driver_id",
     "views": [{"name": "driver_hourly_stats", "source": "/tmp/.../hourly.parquet",
                "features": [{"name": "conv_rate", "dtype": "Float32"}, ...]}]}

Every view is keyed by the one Int64 key (a view may name its own ``key``), has
``event_timestamp`` and ``created`` columns, ttl 1 day, and is read through Feast's DuckDB
offline store (its fastest here) into its Redis online store.
"""

from __future__ import annotations

import logging
import os
import warnings
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("FEAST_USAGE", "False")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from feast import Entity, FeatureStore, FeatureView, Field, FileSource  # noqa: E402
from feast import types as feast_types  # noqa: E402
from feast.repo_config import RegistryConfig, RepoConfig  # noqa: E402


def build_store(job: dict, registry_cache_ttl_seconds: int) -> FeatureStore:
    """A Feast store in ``job["workdir"]`` with the job's views applied (nothing materialized)."""
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(
        config=RepoConfig(
            project="bench",
            provider="local",
            registry=RegistryConfig(
                path=str(workdir / "registry.db"), cache_ttl_seconds=registry_cache_ttl_seconds
            ),
            offline_store={"type": "duckdb"},
            online_store={"type": "redis", "connection_string": job["redis"]},
            entity_key_serialization_version=3,
            repo_path=str(workdir),
        )
    )
    entities: dict[str, Entity] = {}
    views = []
    for spec in job["views"]:
        key = spec.get("key", job.get("key"))
        entity = entities.setdefault(key, Entity(name=key, join_keys=[key]))
        views.append(
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
    store.apply([*entities.values(), *views])
    return store
