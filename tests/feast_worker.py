"""Run Feast's ``get_historical_features`` on cases described in JSON; Parquet in, Parquet out.

This script runs under the *Feast* virtual environment (``.venv-feast/bin/python``: Feast
0.67 pins pandas < 3, numpy < 3 and redis-py < 8, which conflict with ours), never under
ours, and imports nothing from ``featurestore``. Importing Feast takes ~4 s, so one process
handles many cases:

* ``feast_worker.py`` (no argument): read one JSON job per line on stdin, answer one JSON line
  per job on stdout, until stdin closes. Used by tests/offline/test_feast_parity.py.
* ``feast_worker.py JOB.json``: run the one job in the file, print its answer, exit. Used by
  benchmarks/bench_historical.py so that each measurement's peak memory is its own process's.

A job::

    {"id": "case-7",                      # echoed back
     "workdir": "/tmp/.../case-7/feast",  # a fresh folder for the Feast repo (registry)
     "offline_store": "duckdb",           # or "file" (Feast's default, dask-based)
     "entity_df": "/tmp/.../entities.parquet",   # needs an `event_timestamp` column
     "views": [{"name": "v0",
                "source": "/tmp/.../v0.parquet",
                "timestamp_field": "event_ts",
                "created_timestamp_column": "created_ts",   # or null
                "keys": [{"name": "k0", "dtype": "Int64"}], # one Feast Entity per key
                "features": [{"name": "f0", "dtype": "Float64"}],
                "ttl_seconds": 3600}],                      # null or 0: no ttl (Feast's rule)
     "features": ["v0:f0"],
     "full_feature_names": false,
     "filter_by_created_timestamp": false, # true: only rows created by the entity time
     "output": "arrow",                   # "arrow": job.to_arrow(); "df": job.to_df()
     "calls": 1,                          # how many times to run the retrieval
     "out": "/tmp/.../feast.parquet"}     # optional: where to write the result

An answer: ``{"id": ..., "ok": true, "rows": N, "seconds": S, "all_seconds": [...],
"all_cpu_seconds": [...], "setup_seconds": A}`` where ``seconds`` times
``get_historical_features(...).to_arrow()/.to_df()`` alone (the last of ``"calls"``, default 1)
and ``all_cpu_seconds`` is each call's CPU time (all threads of the process), or
``{"id": ..., "ok": false, "error": "..."}``. With ``"output": "df"`` the frame is written with
``pyarrow.Table.from_pandas``, so Feast's pandas dtypes (int64-with-nulls as float64 NaN) show.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

# Feast prints deprecation and usage noise; the protocol owns stdout, so keep it quiet.
os.environ.setdefault("FEAST_USAGE", "False")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from feast import Entity, FeatureStore, FeatureView, Field, FileSource  # noqa: E402
from feast import types as feast_types  # noqa: E402
from feast.repo_config import RegistryConfig, RepoConfig  # noqa: E402
from feast.value_type import ValueType  # noqa: E402

FEAST_DTYPES = {
    "Int32": feast_types.Int32,
    "Int64": feast_types.Int64,
    "Float32": feast_types.Float32,
    "Float64": feast_types.Float64,
    "String": feast_types.String,
    "Bool": feast_types.Bool,
    "UnixTimestamp": feast_types.UnixTimestamp,
}
KEY_VALUE_TYPES = {"Int32": ValueType.INT32, "Int64": ValueType.INT64, "String": ValueType.STRING}


def feast_store(job: dict[str, Any]) -> tuple[FeatureStore, list[Any]]:
    """A Feast store in ``job["workdir"]`` with the job's entities and views applied."""
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    offline = (
        {"type": "duckdb"} if job.get("offline_store", "duckdb") == "duckdb" else {"type": "file"}
    )
    config = RepoConfig(
        project="parity",
        provider="local",
        registry=RegistryConfig(path=str(workdir / "registry.db"), cache_ttl_seconds=0),
        offline_store=offline,
        online_store={"type": "sqlite", "path": str(workdir / "online.db")},
        entity_key_serialization_version=3,
        repo_path=str(workdir),
    )
    store = FeatureStore(config=config)
    entities: dict[str, Entity] = {}
    objects: list[Any] = []
    for spec in job["views"]:
        key_fields = []
        view_entities = []
        for key in spec["keys"]:
            # Feast: one join key per entity, so a composite key is several entities.
            if key["name"] not in entities:
                entities[key["name"]] = Entity(
                    name=key["name"],
                    join_keys=[key["name"]],
                    value_type=KEY_VALUE_TYPES[key["dtype"]],
                )
            view_entities.append(entities[key["name"]])
            key_fields.append(Field(name=key["name"], dtype=FEAST_DTYPES[key["dtype"]]))
        ttl = spec.get("ttl_seconds")
        view = FeatureView(
            name=spec["name"],
            entities=view_entities,
            ttl=timedelta(seconds=ttl or 0),
            schema=key_fields
            + [Field(name=f["name"], dtype=FEAST_DTYPES[f["dtype"]]) for f in spec["features"]],
            source=FileSource(
                name=f"{spec['name']}_source",
                path=spec["source"],
                timestamp_field=spec["timestamp_field"],
                created_timestamp_column=spec.get("created_timestamp_column") or "",
            ),
            online=False,
        )
        objects.append(view)
    store.apply([*entities.values(), *objects])
    return store, objects


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job; the answer says how long the retrieval took and how many rows came back.

    ``"calls": N`` (default 1) runs the same retrieval N times in this process, keeping only
    the last result, and answers every call's time in ``all_seconds`` (the first call pays
    for Feast's lazy imports and query compilation).
    """
    started = time.perf_counter()
    store, _ = feast_store(job)
    entity_df = pd.read_parquet(job["entity_df"])
    setup = time.perf_counter() - started

    timings, cpu = [], []
    result: pa.Table | pd.DataFrame | None = None
    for _ in range(job.get("calls", 1)):
        result = None  # free the previous result before the next call, as a caller would
        started, cpu_started = time.perf_counter(), time.process_time()
        retrieval = store.get_historical_features(
            entity_df=entity_df,
            features=job["features"],
            full_feature_names=job.get("full_feature_names", False),
            filter_by_created_timestamp=job.get("filter_by_created_timestamp", False),
        )
        result = (
            retrieval.to_arrow() if job.get("output", "arrow") == "arrow" else retrieval.to_df()
        )
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    if isinstance(result, pd.DataFrame):
        rows = len(result)
        table = pa.Table.from_pandas(result, preserve_index=False) if job.get("out") else None
    else:
        rows, table = result.num_rows, result
    if job.get("out"):
        pq.write_table(table, job["out"])
    return {
        "id": job.get("id"),
        "ok": True,
        "rows": rows,
        "seconds": timings[-1],
        "all_seconds": timings,
        "all_cpu_seconds": cpu,
        "setup_seconds": setup,
    }


def answer(job: dict[str, Any]) -> dict[str, Any]:
    try:
        return run_job(job)
    except Exception as exc:  # the boundary: report the case's failure, keep serving others
        return {
            "id": job.get("id"),
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
        }


def main(argv: list[str]) -> int:
    # Anything Feast prints goes to stderr; stdout carries only our JSON answers.
    protocol = sys.stdout
    sys.stdout = sys.stderr
    if len(argv) > 1:
        reply = answer(json.loads(Path(argv[1]).read_text()))
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()
        return 0 if reply["ok"] else 1
    protocol.write(json.dumps({"ready": True}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        if line.strip():
            protocol.write(json.dumps(answer(json.loads(line))) + "\n")
            protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
