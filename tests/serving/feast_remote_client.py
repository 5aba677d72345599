"""Feast 0.67's own HTTP client reading our server: runs under the Feast venv (.venv-feast).

    feast_remote_client.py JOB.json

JOB: {"workdir": ..., "url": "http://127.0.0.1:PORT", "features": ["profile:score32", ...],
"users": [1, 2, ...], "source": "<any Parquet file>"}. A Feast repo declaring the ``profile``
view of tests/serving/small_repo.py, with ``online_store: {type: remote, path: URL}``, reads
the features through ``FeatureStore.get_online_features``; prints its ``to_dict()`` as JSON.
Imports nothing from featurestore.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("FEAST_USAGE", "False")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from feast import Entity, FeatureStore, FeatureView, Field, FileSource  # noqa: E402
from feast import types as t  # noqa: E402
from feast.repo_config import RegistryConfig, RepoConfig  # noqa: E402
from feast.value_type import ValueType  # noqa: E402


def main(job: dict) -> dict:
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(
        config=RepoConfig(
            project="small",
            provider="local",
            registry=RegistryConfig(path=str(workdir / "registry.db"), cache_ttl_seconds=0),
            offline_store={"type": "file"},
            online_store={"type": "remote", "path": job["url"]},
            entity_key_serialization_version=3,
            repo_path=str(workdir),
        )
    )
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    profile = FeatureView(
        name="profile",
        entities=[user],
        ttl=timedelta(days=7),
        schema=[
            Field(name="user_id", dtype=t.Int64),
            Field(name="score32", dtype=t.Float32),
            Field(name="score64", dtype=t.Float64),
            Field(name="n", dtype=t.Int32),
            Field(name="big", dtype=t.Int64),
            Field(name="country", dtype=t.String),
            Field(name="verified", dtype=t.Bool),
        ],
        source=FileSource(name="profile_source", path=job["source"], timestamp_field="event_ts"),
        online=True,
    )
    store.apply([user, profile])
    response = store.get_online_features(
        features=job["features"], entity_rows=[{"user_id": u} for u in job["users"]]
    )
    return response.to_dict()


if __name__ == "__main__":
    protocol, sys.stdout = sys.stdout, sys.stderr  # anything Feast prints goes to stderr
    protocol.write(json.dumps(main(json.loads(Path(sys.argv[1]).read_text()))) + "\n")
