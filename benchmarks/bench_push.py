"""Push throughput into Redis, ours vs Feast 0.67: rows per second, online and online_and_offline.

    .venv/bin/python benchmarks/bench_push.py [--scale 1]

One quickstart-shaped view (driver_hourly_stats: conv_rate, acc_rate Float32,
avg_daily_trips Int64; created timestamps) over a push source whose batch source is a
Parquet file of 10,000 drivers x 24 hours; each system pushes into its own throwaway
``redis-server``. Batches of 1, 100 and 10,000 rows (each row a new hour for a driver),
pushed 200, 100 and 10 times (x ``--scale``) after 3 warm-up pushes, in each mode:
``online`` (the online store only) and ``online_and_offline`` (also appended offline: here a
new Parquet file per push in the source's companion folder; Feast's DuckDB store rewrites its
file). Rows/s is wall clock; CPU is the pushing process's. The machine is shared: compare the
ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_online_sdk import FEAST_PYTHON
from redis_server import RedisServer
from rich.console import Console
from rich.table import Table

from featurestore import FeatureStore

DRIVERS = 10_000
SIZES = {"1": 200, "100": 100, "10000": 10}
MODES = ("online", "online_and_offline")
DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, FileSource, PushSource
from featurestore.types import Float32, Int64

driver = Entity(name="driver", join_keys=["driver_id"])
driver_hourly_stats = FeatureView(
    name="driver_hourly_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[Field(name="driver_id", dtype=Int64), Field(name="conv_rate", dtype=Float32),
            Field(name="acc_rate", dtype=Float32), Field(name="avg_daily_trips", dtype=Int64)],
    source=PushSource(
        name="hourly_push",
        batch_source=FileSource(path="data/hourly.parquet", timestamp_field="event_timestamp",
                                created_timestamp_column="created"),
    ),
)
"""


def table(rows: int, start: datetime, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = pa.timestamp("us", tz="UTC")
    drivers = np.arange(1001, 1001 + DRIVERS, dtype=np.int64)
    ids = np.resize(drivers, rows)
    hours = np.arange(rows) // DRIVERS
    event = [start + timedelta(hours=int(h)) for h in hours]
    return pa.table(
        {
            "driver_id": pa.array(ids),
            "event_timestamp": pa.array(event, ts),
            "created": pa.array(event, ts),
            "conv_rate": pa.array(rng.random(rows, dtype=np.float32)),
            "acc_rate": pa.array(rng.random(rows, dtype=np.float32)),
            "avg_daily_trips": pa.array(rng.integers(0, 1000, rows)),
        }
    )


def ours(workdir: Path, server: RedisServer, source: Path, batches: dict[str, Path],
         pushes: dict[str, int]) -> list[dict]:  # fmt: skip
    repo = workdir / "ours"
    (repo / "data").mkdir(parents=True)
    (repo / "featurestore.yaml").write_text(
        "project: bench_push\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
        f"online_store: {server.online_store}\n"
    )
    (repo / "definitions.py").write_text(DEFINITIONS)
    (repo / "data" / "hourly.parquet").write_bytes(source.read_bytes())
    store = FeatureStore(repo)
    store.apply()
    results = []
    for mode in MODES:
        for size, path in batches.items():
            batch = pq.read_table(path).to_pandas()
            for _ in range(3):
                store.push("hourly_push", batch, to=mode)
            began, cpu = time.perf_counter(), time.process_time()
            for _ in range(pushes[size]):
                store.push("hourly_push", batch, to=mode)
            results.append(
                {"mode": mode, "size": size, "rows": pushes[size] * len(batch),
                 "seconds": time.perf_counter() - began, "cpu": time.process_time() - cpu}
            )  # fmt: skip
    store.close()
    return results


def feast(workdir: Path, server: RedisServer, source: Path, batches: dict[str, Path],
          pushes: dict[str, int]) -> list[dict]:  # fmt: skip
    job = {
        "workdir": str(workdir / "feast"),
        "redis": f"127.0.0.1:{server.port}",
        "source": str(source),
        "batches": {k: str(v) for k, v in batches.items()},
        "pushes": pushes,
        "modes": list(MODES),
    }
    path = workdir / "feast_push.json"
    path.write_text(json.dumps(job))
    done = subprocess.run(
        [str(FEAST_PYTHON), str(Path(__file__).with_name("feast_push.py")), str(path)],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.exit(f"Feast's side failed:\n{done.stderr[-3000:]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the push counts")
    args = parser.parse_args()
    if not FEAST_PYTHON.exists():
        sys.exit(f"Feast's venv is missing ({FEAST_PYTHON}): run 'make feast' first")
    pushes = {size: max(1, round(n * args.scale)) for size, n in SIZES.items()}
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    servers = {"ours": RedisServer(), "feast": RedisServer()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            source = workdir / "hourly.parquet"
            pq.write_table(table(DRIVERS * 24, start, 1), source)
            batches = {}
            for size in SIZES:
                batches[size] = workdir / f"batch-{size}.parquet"
                pq.write_table(table(int(size), start + timedelta(days=1), 2), batches[size])
            load_before = os.getloadavg()[0]
            results = {
                "ours": ours(workdir, servers["ours"], source, batches, pushes),
                "Feast 0.67": feast(workdir, servers["feast"], source, batches, pushes),
            }
            load_after = os.getloadavg()[0]
    finally:
        for server in servers.values():
            server.stop()

    console = Console(width=130)
    grid = Table(title="push into Redis: rows/s (wall clock), CPU ms per push")
    for column in ("mode", "rows per push", "pushes", "ours rows/s", "ours CPU ms/push",
                   "Feast rows/s", "Feast CPU ms/push", "ours faster"):  # fmt: skip
        grid.add_column(column, justify="right")
    lines = []
    by = {name: {(r["mode"], r["size"]): r for r in rs} for name, rs in results.items()}
    for mode in MODES:
        for size in SIZES:
            a, b = by["ours"][(mode, size)], by["Feast 0.67"][(mode, size)]
            n = pushes[size]
            row = [mode, size, str(n), f"{a['rows'] / a['seconds']:,.0f}",
                   f"{a['cpu'] / n * 1000:.2f}", f"{b['rows'] / b['seconds']:,.0f}",
                   f"{b['cpu'] / n * 1000:.2f}", f"{b['seconds'] / a['seconds']:.1f}x"]  # fmt: skip
            lines.append(row)
            grid.add_row(*row)
    console.print(grid)
    console.print(f"load average (1 min) {load_before:.1f} before, {load_after:.1f} after, 2 cores")
    print("\nMarkdown (README):\n")
    print("| mode | rows per push | pushes | ours rows/s | ours CPU per push | Feast 0.67 rows/s "
          "| Feast CPU per push | ours faster |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for mode, size, n, ar, ac, br, bc, x in lines:
        print(f"| {mode} | {size} | {n} | {ar} | {ac} ms | {br} | {bc} ms | {x} |")


if __name__ == "__main__":
    main()
