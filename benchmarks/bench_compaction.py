"""What many small pushes cost the offline reads, and what ``compact-pushes`` gives back.

    .venv/bin/python benchmarks/bench_compaction.py [--pushes 2000] [--repeat 3]

The quickstart-shaped view of benchmarks/bench_push.py (10,000 drivers x 24 hours in its
Parquet file), then ``--pushes`` offline pushes of 10 rows each (a stream of small pushes:
one new file each). Measured with those files, then after ``FeatureStore.compact_pushes()``
(one merged file), in the same run: a training set of 10,000 entity rows (``to_arrow``) and
a full materialization into SQLite (medians of ``--repeat``). The answers are checked equal
before and after. The machine is shared: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from bench_push import DEFINITIONS, table
from rich.console import Console
from rich.table import Table

from featurestore import FeatureStore

START = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES = ["driver_hourly_stats:conv_rate", "driver_hourly_stats:avg_daily_trips"]


def timed(repeat: int, run: object) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = run()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        (repo / "data").mkdir(parents=True)
        (repo / "featurestore.yaml").write_text(
            "project: bench_compaction\nregistry: data/registry.json\n"
            "offline_store: {type: duckdb}\nonline_store: {type: sqlite, path: data/online.db}\n"
        )
        (repo / "definitions.py").write_text(DEFINITIONS)
        pq.write_table(table(10_000 * 24, START, seed=1), repo / "data" / "hourly.parquet")
        store = FeatureStore(repo)
        store.apply()
        batch = table(10, START + timedelta(hours=24), seed=2).to_pandas()
        began = time.perf_counter()
        for i in range(args.pushes):
            batch["event_timestamp"] = START + timedelta(hours=24, seconds=i)
            batch["created"] = batch["event_timestamp"]
            store.push("hourly_push", batch, to="offline")
        push_seconds = time.perf_counter() - began
        rng = np.random.default_rng(3)
        entity_df = pd.DataFrame(
            {
                "driver_id": rng.integers(1001, 11_001, 10_000),
                "event_timestamp": START + pd.to_timedelta(rng.integers(0, 26 * 3600, 10_000), "s"),
            }
        )
        end = START + timedelta(hours=26)

        def training() -> object:
            return store.get_historical_features(entity_df, FEATURES).to_arrow()

        def materialize() -> object:
            return store.materialize(START - timedelta(days=1), end)

        rows = []
        results = {}
        for label in ("before", "after"):
            if label == "after":
                began = time.perf_counter()
                (report,) = store.compact_pushes()
                compact_seconds = time.perf_counter() - began
            files = len(list((repo / "data" / "hourly.parquet.pushed").glob("*.parquet")))
            train_s, results[label] = timed(args.repeat, training)
            mat_s, _ = timed(args.repeat, materialize)
            rows.append((label, files, train_s, mat_s))
        if not results["before"].equals(results["after"]):  # type: ignore[attr-defined]
            sys.exit("the training set changed with compaction")
        out = Table(
            "pushed files", "files", "training set (10k rows)", "materialize (all)",
            title=f"{args.pushes:,} pushes of 10 rows ({push_seconds:.1f} s to push); "
            f"compact-pushes took {compact_seconds:.2f} s ({report.rows:,} rows merged)",
        )  # fmt: skip
        for label, files, train_s, mat_s in rows:
            out.add_row(label, f"{files:,}", f"{train_s:.2f} s", f"{mat_s:.2f} s")
        (_, _, tb, mb), (_, _, ta, ma) = rows
        out.add_row("faster after", "", f"{tb / ta:.1f}x", f"{mb / ma:.1f}x")
        console = Console()
        console.print(out)
        console.print(f"training sets equal before and after; load average {_load()}")


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
