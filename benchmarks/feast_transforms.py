"""Time Feast 0.67's ``get_online_features`` with and without an on-demand view; runs under
Feast's own venv (run by benchmarks/bench_transforms.py, never imported by it).

The job is bench_online_sdk's (benchmarks/feast_online_sdk.py), plus ``"with"``: the feature
list that adds the quickstart's on-demand view ``transformed_conv_rate`` (conv_rate plus the
request fields ``val_to_add`` and ``val_to_add_2``, as Feast's template defines it). Prints
one JSON line with both first answers, then for each line ``{"which": "base" | "with",
"calls": N, "offset": K}`` on stdin times N calls of one entity and prints their latencies
and CPU time.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64
from feast_quickstart import build_store

WARMUP = 200


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    store = build_store(job, registry_cache_ttl_seconds=60)
    hourly = store.get_feature_view("driver_hourly_stats")
    request = RequestSource(
        name="vals_to_add",
        schema=[Field(name="val_to_add", dtype=Int64), Field(name="val_to_add_2", dtype=Int64)],
    )

    @on_demand_feature_view(
        sources=[hourly, request],
        schema=[
            Field(name="conv_rate_plus_val1", dtype=Float64),
            Field(name="conv_rate_plus_val2", dtype=Float64),
        ],
    )
    def transformed_conv_rate(inputs: pd.DataFrame) -> pd.DataFrame:
        df = pd.DataFrame()
        df["conv_rate_plus_val1"] = inputs["conv_rate"] + inputs["val_to_add"]
        df["conv_rate_plus_val2"] = inputs["conv_rate"] + inputs["val_to_add_2"]
        return df

    store.apply([request, transformed_conv_rate])
    store.materialize(datetime.fromisoformat(job["start"]), datetime.fromisoformat(job["end"]))
    lists = {"base": job["features"], "with": job["with"]}
    rows = [[{"driver_id": i, "val_to_add": 1000, "val_to_add_2": 2000}] for (i,) in job["ids"]]

    def call(which: str, n: int) -> dict:
        return store.get_online_features(
            features=lists[which], entity_rows=rows[n % len(rows)]
        ).to_dict()

    first = {which: call(which, 0) for which in lists}
    for n in range(WARMUP):
        for which in lists:
            call(which, n)
    print(json.dumps({"first": first}, default=str), flush=True)
    for line in sys.stdin:
        block = json.loads(line)
        latencies = []
        cpu = time.process_time()
        for n in range(block["offset"], block["offset"] + block["calls"]):
            began = time.perf_counter()
            call(block["which"], n)
            latencies.append(time.perf_counter() - began)
        print(json.dumps({"latencies": latencies, "cpu": time.process_time() - cpu}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
