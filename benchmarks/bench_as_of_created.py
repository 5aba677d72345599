"""Windowed aggregations as of created time (what ``train`` uses) beside as of event time.

    .venv/bin/python benchmarks/bench_as_of_created.py [--events 2M] [--keys 20k]
        [--rows 200k] [--hot 0.05] [--lag 600] [--repeat 3]

Data (seeded): ``--events`` events over 30 days, a share ``--hot`` of them (and of the entity
rows) for one busy key (a merchant, a popular item), the rest spread uniformly over
``--keys`` keys; each event is created an exponentially distributed ``--lag`` seconds (mean)
after it happens; ``--rows`` entity rows at random times. The view aggregates ``amount``
with count, sum, mean and max over 1 h, 24 h and 7 d. Each training set is built in a fresh
process; wall and CPU time are medians of ``--repeat`` runs.

``as_of="created"`` keeps, for each row, only the events created by its time: a row that
sees an event created after its time merges its window's last pieces from its own known
events, every other row shares the tiles of ``as_of="event"``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from bench_aggregations import DAYS, START, size

DEFINITIONS = """
from datetime import timedelta

from featurestore import Entity, FeatureView, FileSource
from featurestore.definitions import Aggregation

key = Entity(name="key", join_keys=["key"])
txn = FeatureView(
    name="txn",
    entities=[key],
    source=FileSource(
        path="data/events.parquet", timestamp_field="ts", created_timestamp_column="created"
    ),
    aggregations=[
        Aggregation(column="amount", function=f, time_window=timedelta(seconds=w))
        for w in (3_600, 86_400, 7 * 86_400)
        for f in ("count", "sum", "mean", "max")
    ],
)
"""

RUN = """
import json, sys, time
import pyarrow.parquet as pq
from featurestore import FeatureStore
repo, as_of = sys.argv[1:3]
store = FeatureStore(repo)
refs = [f"txn:{a.name}" for a in store.state.view("txn").aggregations]
rows = pq.read_table(repo + "/entities.parquet")
began = time.perf_counter(); cpu = time.process_time()
store.get_historical_features(rows, refs, as_of=as_of).to_arrow()
print(json.dumps({"seconds": time.perf_counter() - began, "cpu": time.process_time() - cpu}))
"""


def generate(folder: Path, events: int, keys: int, rows: int, hot: float, lag: float) -> None:
    rng = np.random.default_rng(11)
    start_us = int(START.timestamp()) * 1_000_000
    span = DAYS * 86_400 * 1_000_000

    def keys_of(n: int) -> np.ndarray:
        drawn = rng.integers(1, keys + 1, n)
        drawn[rng.random(n) < hot] = 0  # the busy key
        return drawn

    ts = np.sort(start_us + rng.integers(0, span, events))
    created = ts + (rng.exponential(lag, events) * 1e6).astype(np.int64)
    utc = pa.timestamp("us", tz="UTC")
    (folder / "data").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "key": pa.array(keys_of(events), pa.int64()),
                "ts": pa.array(ts, pa.int64()).cast(utc),
                "created": pa.array(created, pa.int64()).cast(utc),
                "amount": np.round(rng.exponential(60.0, events), 2),
            }
        ),
        folder / "data" / "events.parquet",
        row_group_size=1_000_000,
    )
    entity_times = pa.array(start_us + rng.integers(0, span, rows), pa.int64()).cast(utc)
    pq.write_table(
        pa.table({"key": pa.array(keys_of(rows), pa.int64()), "event_timestamp": entity_times}),
        folder / "entities.parquet",
    )
    (folder / "featurestore.yaml").write_text("project: bench\nregistry: data/registry.json\n")
    (folder / "features.py").write_text(DEFINITIONS)


def run(folder: Path, as_of: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(folder), as_of], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=size, default=size("2M"))
    parser.add_argument("--keys", type=size, default=size("20k"))
    parser.add_argument("--rows", type=size, default=size("200k"))
    parser.add_argument("--hot", type=float, default=0.05, help="the busy key's share")
    parser.add_argument("--lag", type=float, default=600.0, help="mean seconds to creation")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    console.print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(folder, args.events, args.keys, args.rows, args.hot, args.lag)
        subprocess.run(
            [sys.executable, "-m", "featurestore.cli", "apply", "--repo", str(folder)],
            check=True,
            capture_output=True,
        )
        runs = {
            as_of: [run(folder, as_of) for _ in range(args.repeat)]
            for as_of in ("event", "created")
        }
    table = Table(
        title=(
            f"training set, {args.rows:,} rows over {args.events:,} events, one key holding "
            f"{args.hot:.0%}, created {args.lag:.0f} s after (mean)"
        )
    )
    for column in ("as_of", "wall (median)", "CPU"):
        table.add_column(column)
    for as_of, results in runs.items():
        wall = statistics.median(r["seconds"] for r in results)
        cpu = statistics.median(r["cpu"] for r in results)
        table.add_row(as_of, f"{wall:.2f} s", f"{cpu:.2f} s")
    ratio = statistics.median(r["seconds"] for r in runs["created"]) / statistics.median(
        r["seconds"] for r in runs["event"]
    )
    table.add_row("created / event", f"{ratio:.1f}x", "")
    console.print(table)
    console.print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
