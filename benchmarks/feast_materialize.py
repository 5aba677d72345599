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
import sys
import time
from datetime import datetime
from pathlib import Path

from feast_quickstart import build_store


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    store = build_store(job, registry_cache_ttl_seconds=0)
    start = datetime.fromisoformat(job["start"])
    end = datetime.fromisoformat(job["end"])
    began = time.perf_counter()
    store.materialize(start, end)
    print(json.dumps({"seconds": time.perf_counter() - began}))


if __name__ == "__main__":
    main(sys.argv[1])
