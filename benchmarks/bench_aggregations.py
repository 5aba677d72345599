"""Windowed aggregations: training sets against the hand-written DuckDB query, online reads
and materialization, in one run.

    .venv/bin/python benchmarks/bench_aggregations.py [--events 10M] [--keys 100k]
        [--rows 1M] [--repeat 3] [--online-calls 2000] [--skip-online]

Data (seeded): ``--events`` transactions over 30 days, ``--keys`` users drawn uniformly,
amounts with two decimals; ``--rows`` entity rows (a user and a time drawn uniformly over
the same 30 days). The view aggregates ``amount`` with count, sum, mean and max over 1 h,
24 h and 7 d (default slides: 5 min, 1 h, 1 h).

* **Training set**: ``get_historical_features(...).to_arrow()``, each run in a fresh process
  (wall time and peak RSS of that process), beside the straightforward DuckDB query a user
  would write: one range join of the entity rows to the events over the longest window,
  ``GROUP BY`` the entity row, each window's aggregates ``FILTER``ed (same window bounds:
  ``floor(t - w, slide) <= ts < t``). Results are checked equal: counts and maxima exactly,
  sums and means within 1e-9 relative (DuckDB's parallel sums are not bit-deterministic).
* **Materialization** into a throwaway redis-server: the aggregated view (tiles) and, on
  the same events, a plain view of the latest amount per user; events per second and Redis
  ``used_memory`` per user.
* **Online SDK**: ``get_online_features`` at the materialized end, 1 user x 12 features and
  100 users x 12 features: p50, p99 and CPU per call.

Medians of ``--repeat`` runs; the machine is shared, so the load average is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from redis_server import RedisServer
from rich.console import Console
from rich.table import Table

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
WINDOWS = (("1h", 3_600, 300), ("1d", 86_400, 3_600), ("7d", 7 * 86_400, 3_600))
FUNCTIONS = ("count", "sum", "mean", "max")

DEFINITIONS = """
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, FileSource
from featurestore.definitions import Aggregation
from featurestore.types import Float64, Int64

user = Entity(name="user", join_keys=["user_id"])
txn = FeatureView(
    name="txn",
    entities=[user],
    source=FileSource(path="data/events.parquet", timestamp_field="ts"),
    aggregations=[
        Aggregation(column="amount", function=f, time_window=timedelta(seconds=w))
        for w in (3_600, 86_400, 7 * 86_400)
        for f in ("count", "sum", "mean", "max")
    ],
)
latest = FeatureView(
    name="latest",
    entities=[user],
    schema=[Field(name="user_id", dtype=Int64), Field(name="amount", dtype=Float64)],
    source=FileSource(path="data/events.parquet", timestamp_field="ts"),
)
"""

OURS = """
import json, resource, sys, time
import pyarrow.parquet as pq
from featurestore import FeatureStore
repo, entities, out = sys.argv[1:4]
store = FeatureStore(repo)
refs = [f"txn:{a.name}" for a in store.state.view("txn").aggregations]
rows = pq.read_table(entities)
began = time.perf_counter(); cpu = time.process_time()
table = store.get_historical_features(rows, refs).to_arrow()
seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
pq.write_table(table, out)
print(json.dumps({"seconds": seconds, "cpu": cpu,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

HAND = """
import json, resource, sys, time
import duckdb
events, entities, out = sys.argv[1:4]
filters = []
for label, window, slide in {windows}:
    start = f"(epoch_us(e.event_timestamp) - {{window * 10**6}}) // {{slide * 10**6}} * {{slide * 10**6}}"
    inside = f"epoch_us(s.ts) >= {{start}}"
    filters += [
        f"count(s.ts) FILTER (WHERE {{inside}}) AS count_amount_{{label}}",
        f"coalesce(sum(s.amount) FILTER (WHERE {{inside}}), 0) AS sum_amount_{{label}}",
        f"avg(s.amount) FILTER (WHERE {{inside}}) AS mean_amount_{{label}}",
        f"max(s.amount) FILTER (WHERE {{inside}}) AS max_amount_{{label}}",
    ]
widest = max(w for _, w, _ in {windows})
slide = [s for _, w, s in {windows} if w == widest][0]
query = f'''
SELECT e.row, {{", ".join(filters)}}
FROM (SELECT row_number() OVER () - 1 AS row, * FROM read_parquet('{{entities}}')) e
LEFT JOIN read_parquet('{{events}}') s
  ON s.user_id = e.user_id AND s.ts < e.event_timestamp
 AND epoch_us(s.ts) >= (epoch_us(e.event_timestamp) - {{widest * 10**6}}) // {{slide * 10**6}} * {{slide * 10**6}}
GROUP BY e.row ORDER BY e.row
'''
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
began = time.perf_counter(); cpu = time.process_time()
table = con.sql(query).to_arrow_table()
seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
import pyarrow.parquet as pq
pq.write_table(table, out)
print(json.dumps({{"seconds": seconds, "cpu": cpu,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""


def size(text: str) -> int:
    text = text.lower()
    for suffix, factor in (("m", 1_000_000), ("k", 1_000)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * factor)
    return int(text)


def generate(folder: Path, events: int, keys: int, rows: int) -> None:
    rng = np.random.default_rng(7)
    start_us = int(START.timestamp()) * 1_000_000
    span = DAYS * 86_400 * 1_000_000
    (folder / "data").mkdir(parents=True)
    ts = np.sort(start_us + rng.integers(0, span, events))
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array(rng.integers(0, keys, events), pa.int64()),
                "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                "amount": np.round(rng.exponential(60.0, events), 2),
            }
        ),
        folder / "data" / "events.parquet",
        row_group_size=1_000_000,
    )
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array(rng.integers(0, keys, rows), pa.int64()),
                "event_timestamp": pa.array(
                    start_us + rng.integers(0, span, rows), pa.int64()
                ).cast(pa.timestamp("us", tz="UTC")),
            }
        ),
        folder / "entities.parquet",
    )
    (folder / "featurestore.yaml").write_text("project: bench\nregistry: data/registry.json\n")
    (folder / "features.py").write_text(DEFINITIONS)


def run(code: str, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(ours: Path, hand: Path) -> tuple[int, float]:
    """Values compared (every feature of every row) and the largest relative difference."""
    a, b = pq.read_table(ours), pq.read_table(hand)
    compared, worst = 0, 0.0
    for label, _, _ in WINDOWS:
        for function in FUNCTIONS:
            name = f"{function}_amount_{label}"
            x = a[name].to_numpy(zero_copy_only=False).astype(float)
            y = b[name].to_numpy(zero_copy_only=False).astype(float)
            nan_x, nan_y = np.isnan(x), np.isnan(y)
            assert (nan_x == nan_y).all(), f"{name}: null where the other has a value"
            x, y = x[~nan_x], y[~nan_y]
            if function in ("count", "max"):
                assert (x == y).all(), f"{name}: differs"
            else:
                relative = np.abs(x - y) / np.maximum(np.abs(y), 1e-300)
                worst = max(worst, float(relative.max(initial=0.0)))
                assert worst <= 1e-9, f"{name}: relative difference {worst}"
            compared += len(x)
    return compared, worst


def offline(folder: Path, repeat: int, console: Console) -> list[tuple[str, ...]]:
    ours_out, hand_out = folder / "ours.parquet", folder / "hand.parquet"
    ours = [
        run(OURS, str(folder), str(folder / "entities.parquet"), str(ours_out))
        for _ in range(repeat)
    ]
    hand_code = HAND.format(windows=repr(WINDOWS))
    hand = [
        run(
            hand_code,
            str(folder / "data" / "events.parquet"),
            str(folder / "entities.parquet"),
            str(hand_out),
        )
        for _ in range(repeat)
    ]
    compared, worst = compare(ours_out, hand_out)
    console.print(
        f"results equal: {compared:,} values compared, largest relative difference {worst:.1e}"
    )

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    rows: list[tuple[str, ...]] = []
    for name, runs in (("ours", ours), ("hand-written DuckDB query", hand)):
        rows.append(
            (
                name,
                f"{med(runs, 'seconds'):.2f} s",
                f"{med(runs, 'cpu'):.2f} s",
                f"{med(runs, 'rss') / 1e9:.2f} GB",
            )
        )
    ratio = med(hand, "seconds") / med(ours, "seconds")
    rows.append(("ours faster", f"{ratio:.1f}x", f"{med(hand, 'cpu') / med(ours, 'cpu'):.1f}x", ""))
    return rows


def online(folder: Path, calls: int) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Materialize each view into its own throwaway redis-server (so ``INFO memory`` is that
    view's alone), then time reads of the aggregated one."""
    import pyarrow.compute as pc

    from featurestore import FeatureStore

    end = START + timedelta(days=DAYS)
    events = pq.read_metadata(folder / "data" / "events.parquet").num_rows
    users = pc.count_distinct(
        pq.read_table(folder / "data" / "events.parquet", columns=["user_id"])["user_id"]
    ).as_py()
    made: list[tuple[str, ...]] = []
    servers = []
    try:
        for view in ("latest", "txn"):
            server = RedisServer()
            servers.append(server)
            (folder / "featurestore.yaml").write_text(
                "project: bench\nregistry: data/registry.json\n"
                f"online_store: {{type: redis, url: 'redis://127.0.0.1:{server.port}/0'}}\n"
            )
            store = FeatureStore(folder)
            store.apply()
            before = server.used_memory()
            began = time.perf_counter()
            store.materialize(START - timedelta(days=1), end, views=[view])
            seconds = time.perf_counter() - began
            per_user = (server.used_memory() - before) / users
            kind = "aggregated (tiles)" if view == "txn" else "plain (latest row)"
            rate = f"{events / seconds / 1e6:.2f}M events/s"
            made.append((kind, f"{seconds:.1f} s", rate, f"{per_user:.0f} B"))
        refs = [f"txn:{f}_amount_{label}" for label, _, _ in WINDOWS for f in FUNCTIONS]
        ids = pq.read_table(folder / "entities.parquet", columns=["user_id"])["user_id"].to_pylist()
        reads: list[tuple[str, ...]] = []
        for n in (1, 100):
            rows = [
                [{"user_id": ids[(i * n + j) % len(ids)]} for j in range(n)] for i in range(calls)
            ]
            store.get_online_features(features=refs, entity_rows=rows[0], now=end)
            wall, cpu = [], []
            for request in rows:
                w, c = time.perf_counter(), time.process_time()
                store.get_online_features(features=refs, entity_rows=request, now=end).to_dict()
                wall.append(time.perf_counter() - w)
                cpu.append(time.process_time() - c)
            wall_ms = np.array(wall) * 1000
            reads.append(
                (f"{n} user{'s' if n > 1 else ''} x 12 features", f"{np.percentile(wall_ms, 50):.3f} ms",
                 f"{np.percentile(wall_ms, 99):.3f} ms", f"{statistics.mean(cpu) * 1000:.3f} ms")
            )  # fmt: skip
        store.close()
        return made, reads
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="10M")
    parser.add_argument("--keys", default="100k")
    parser.add_argument("--rows", default="1M")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--online-calls", type=int, default=2000)
    parser.add_argument("--skip-online", action="store_true")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(folder, size(args.events), size(args.keys), size(args.rows))
        from featurestore import FeatureStore

        FeatureStore(folder).apply()
        console.print(f"load average before: {os.getloadavg()}")
        table = Table(
            title=f"training set: {args.rows} entity rows over {args.events} events, {args.keys} users, 3 windows x 4 functions"
        )
        for column in ("query", "wall (median)", "CPU", "peak RSS"):
            table.add_column(column)
        for row in offline(folder, args.repeat, console):
            table.add_row(*row)
        console.print(table)
        if not args.skip_online:
            made, reads = online(folder, args.online_calls)
            table = Table(
                title=f"materialization into Redis: {args.events} events, {args.keys} users"
            )
            for column in ("view", "time", "throughput", "Redis bytes per user"):
                table.add_column(column)
            for row in made:
                table.add_row(*row)
            console.print(table)
            table = Table(
                title=f"get_online_features at the materialized end ({args.online_calls} calls)"
            )
            for column in ("request", "p50", "p99", "CPU per call"):
                table.add_column(column)
            for row in reads:
                table.add_row(*row)
            console.print(table)
        console.print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
