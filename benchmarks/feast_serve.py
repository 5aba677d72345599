"""Feast's side of bench_serving.py: build and materialize a Feast repo that ``feast serve``
can read; runs under Feast's own venv (.venv-feast), never imported by our side.

    .venv-feast/bin/python feast_serve.py JOB.json

JOB is feast_quickstart.py's job plus ``"start"``/``"end"`` (the materialized window, ISO).
Writes ``feature_store.yaml`` into the job's workdir, so that
``.venv-feast/bin/feast -c WORKDIR serve ...`` serves the same registry and Redis.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from feast_quickstart import build_store


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    workdir = Path(job["workdir"])
    store = build_store(job, registry_cache_ttl_seconds=60)
    store.materialize(datetime.fromisoformat(job["start"]), datetime.fromisoformat(job["end"]))
    (workdir / "feature_store.yaml").write_text(
        "project: bench\nprovider: local\n"
        f"registry: {{path: {workdir / 'registry.db'}, cache_ttl_seconds: 60}}\n"
        "offline_store: {type: duckdb}\n"
        f"online_store: {{type: redis, connection_string: '{job['redis']}'}}\n"
        "entity_key_serialization_version: 3\n"
    )
    print(json.dumps({"ok": True}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
