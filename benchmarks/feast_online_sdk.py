"""Time Feast 0.67's SDK ``get_online_features`` on Redis; runs under Feast's own venv.

Run by benchmarks/bench_online_sdk.py as ``.venv-feast/bin/python feast_online_sdk.py JOB.json``
(Feast pins pandas < 3 and redis-py < 8, which conflict with ours), never imported by it.
A job::

    {"workdir": "/tmp/.../feast", "redis": "127.0.0.1:6380",
     "start": "...", "end": "...",            # materialized window (ISO, UTC)
     "key": "driver_id",
     "views": [{"name": "driver_hourly_stats", "source": "/tmp/.../hourly.parquet",
                "features": [{"name": "conv_rate", "dtype": "Float32"}, ...]}],
     "features": ["driver_hourly_stats:conv_rate", ...],
     "requests": {"1": [[1001]], "100": [[1001, ...], ...]}}   # entity ids per call

Builds a Feast repo over the same Parquet sources (DuckDB offline store, Redis online
store), materializes the window, warms up, and prints one JSON line: the answer to the first
request of each size (for the caller to check both systems serve the same values). Then it
times blocks of calls on demand, so the caller can interleave them with its own: for each
line ``{"size": "1", "calls": 500, "offset": 0}`` on stdin it times ``calls`` calls of
``get_online_features(...).to_dict()`` (entity lists from ``offset`` on, cycling) and prints
one JSON line: every call's latency in seconds, and the CPU time of the block.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

from feast import FeatureStore
from feast_quickstart import build_store

WARMUP = 200


def build(job: dict) -> FeatureStore:
    store = build_store(job, registry_cache_ttl_seconds=60)
    store.materialize(datetime.fromisoformat(job["start"]), datetime.fromisoformat(job["end"]))
    return store


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    store = build(job)
    key, features = job["key"], job["features"]
    requests = {
        size: [[{key: i} for i in ids] for ids in id_lists]
        for size, id_lists in job["requests"].items()
    }
    first = {
        size: store.get_online_features(features=features, entity_rows=rows[0]).to_dict()
        for size, rows in requests.items()
    }
    for rows in requests.values():
        for n in range(WARMUP):
            store.get_online_features(features=features, entity_rows=rows[n % len(rows)]).to_dict()
    print(json.dumps({"first": first}, default=str), flush=True)
    for line in sys.stdin:  # one timed block per line: {"size": "1", "calls": 500, "offset": 0}
        block = json.loads(line)
        rows, offset = requests[block["size"]], block["offset"]
        latencies = []
        cpu = time.process_time()
        for n in range(offset, offset + block["calls"]):
            entity_rows = rows[n % len(rows)]
            began = time.perf_counter()
            store.get_online_features(features=features, entity_rows=entity_rows).to_dict()
            latencies.append(time.perf_counter() - began)
        cpu = time.process_time() - cpu
        print(json.dumps({"latencies": latencies, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
