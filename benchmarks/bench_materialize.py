"""Materialization into Redis, ours vs Feast 0.67 (or, with --cluster, ours on one server vs
ours on a local Redis Cluster), side by side in one run.

    .venv/bin/python benchmarks/bench_materialize.py [--sizes 1.25M,12.5M] [--repeat 3]
    .venv/bin/python benchmarks/bench_materialize.py --cluster [--replicas 1]

Data shaped like Feast's quickstart: one ``driver_id`` (Int64) entity and two views with
``event_timestamp`` and ``created`` columns,

* ``driver_hourly_stats``: conv_rate Float32, acc_rate Float32, avg_daily_trips Int64,
  vehicle_type String (4 features);
* ``driver_daily_stats``: lifetime_trips Int64, rating Float64 (2 features);

split evenly between the two views, over 30 days. Each system materializes everything into
its OWN throwaway ``redis-server`` (flushed before every run), so ``INFO memory`` after a run
is that system's alone. Feast runs under ``.venv-feast`` as a subprocess
(benchmarks/feast_materialize.py, DuckDB offline store) and reports the time of its
``materialize`` call; ours is timed around ``FeatureStore.materialize`` in this process.

Reported per size: median wall time, source rows/s (rows in the Parquet sources / s),
entity rows written/s (one per entity and view), Redis ``used_memory`` per entity (after
minus before), and ours/Feast ratios. The machine is shared and noisy: medians of --repeat.

``--cluster``: the same data into one ``redis-server`` and into a local cluster of 3 masters
("cluster 3+3": each with ``--replicas`` replicas, 1 by default; a run then also waits for
them, ``WAIT``, before each watermark), both ours; memory per entity is summed over the
masters only (replicas hold copies), less what replication holds there (its backlog, a fixed
1 MB ring per master, and the replica links' buffers); ratios are cluster / one server.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from redis_server import LocalCluster, RedisServer
from rich import box
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
FEAST_PYTHON = Path(os.environ.get("FEATURESTORE_FEAST_PYTHON", ROOT / ".venv-feast/bin/python"))
SIZES = {"1.25M": (1_250_000, 10_000), "12.5M": (12_500_000, 100_000)}
START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 30
VIEWS = {
    "driver_hourly_stats": [
        ("conv_rate", "Float32"),
        ("acc_rate", "Float32"),
        ("avg_daily_trips", "Int64"),
        ("vehicle_type", "String"),
    ],
    "driver_daily_stats": [("lifetime_trips", "Int64"), ("rating", "Float64")],
}

DEFINITIONS = '''
"""Feast-quickstart-shaped views for the materialization benchmark."""
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, FileSource
from featurestore.types import Float32, Float64, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"])
{views}
'''

VIEW = """
{name} = FeatureView(
    name="{name}",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[Field(name="driver_id", dtype=Int64), {fields}],
    source=FileSource(path="{path}", timestamp_field="event_timestamp",
                      created_timestamp_column="created"),
)
"""


def generate(path: Path, name: str, rows: int, entities: int, seed: int) -> None:
    """Write one view's source: ``rows`` rows over ``entities`` drivers and 30 days."""
    rng = np.random.default_rng(seed)
    span_us = DAYS * 86_400 * 1_000_000
    start_us = int(START.timestamp() * 1_000_000)
    event = start_us + rng.integers(0, span_us, rows)
    columns = {
        "driver_id": pa.array(1001 + rng.integers(0, entities, rows), pa.int64()),
        "event_timestamp": pa.array(event, pa.timestamp("us", tz="UTC")),
        "created": pa.array(
            event + rng.integers(0, 3_600_000_000, rows), pa.timestamp("us", tz="UTC")
        ),
    }
    for feature, dtype in VIEWS[name]:
        if dtype == "Float32":
            columns[feature] = pa.array(rng.random(rows, dtype=np.float32))
        elif dtype == "Float64":
            columns[feature] = pa.array(rng.random(rows) * 5)
        elif dtype == "Int64":
            columns[feature] = pa.array(rng.integers(0, 10_000, rows), pa.int64())
        else:
            kinds = pa.array(["sedan", "suv", "van", "motorbike"])
            columns[feature] = kinds.take(pa.array(rng.integers(0, 4, rows)))
    pq.write_table(pa.table(columns), path, row_group_size=1_000_000)


def dataset(data_dir: Path, label: str) -> dict[str, Path]:
    """The size's two source files, generated once and cached in ``data_dir``."""
    rows, entities = SIZES[label]
    paths = {}
    for i, name in enumerate(VIEWS):
        path = data_dir / f"{label}_{name}.parquet"
        if not path.exists():
            generate(path, name, rows // 2, entities, seed=i)
        paths[name] = path
    return paths


def ours(workdir: Path, sources: dict[str, Path], server: RedisServer | LocalCluster) -> float:
    """Materialize with featurestore; the seconds of ``FeatureStore.materialize``."""
    from featurestore import FeatureStore

    repo = workdir / "ours"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    (repo / "featurestore.yaml").write_text(
        f"project: bench\nonline_store: {server.online_store}\n"
    )
    views = "".join(
        VIEW.format(
            name=name,
            path=sources[name],
            fields=", ".join(f'Field(name="{f}", dtype={t})' for f, t in features),
        )
        for name, features in VIEWS.items()
    )
    (repo / "definitions.py").write_text(textwrap.dedent(DEFINITIONS).format(views=views))
    os.environ.pop("FEATURESTORE_REDIS_URL", None)
    store = FeatureStore(repo)
    store.apply()
    # Like Feast's process, which imported its libraries before its timer started (pandas:
    # pyarrow.compute imports it on first use).
    for module in (
        "pandas",
        "featurestore.offline.duckdb",
        "featurestore.online.redis",
        "featurestore.online.redis_cluster",
    ):
        importlib.import_module(module)
    began = time.perf_counter()
    store.materialize(START, START + timedelta(days=DAYS))
    return time.perf_counter() - began


def feast(workdir: Path, sources: dict[str, Path], server: RedisServer) -> float:
    """Materialize with Feast 0.67 in its venv; the seconds of its ``materialize`` call."""
    repo = workdir / "feast"
    shutil.rmtree(repo, ignore_errors=True)
    job = {
        "workdir": str(repo),
        "redis": f"127.0.0.1:{server.port}",
        "start": START.isoformat(),
        "end": (START + timedelta(days=DAYS)).isoformat(),
        "views": [
            {
                "name": name,
                "source": str(sources[name]),
                "key": "driver_id",
                "features": [{"name": f, "dtype": t} for f, t in features],
            }
            for name, features in VIEWS.items()
        ],
    }
    job_path = workdir / "feast_job.json"
    job_path.write_text(json.dumps(job))
    out = subprocess.run(
        [str(FEAST_PYTHON), str(Path(__file__).parent / "feast_materialize.py"), str(job_path)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"Feast failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def measure(
    label: str, data_dir: Path, workdir: Path, repeat: int, systems: list[tuple[str, Any, Any]]
) -> dict[str, dict]:
    """Each system (name, run, server factory) in turn on its own server(s)."""
    rows, entities = SIZES[label]
    sources = dataset(data_dir, label)
    results: dict[str, dict] = {}
    for system, run, make_server in systems:
        server = make_server()
        try:
            seconds, memory = [], []
            for _ in range(repeat):
                server.flushall()
                before = server.used_memory()
                seconds.append(run(workdir, sources, server))
                memory.append(server.used_memory() - before)
                keys = server.keys()
        finally:
            server.stop()
        wall = statistics.median(seconds)
        results[system] = {
            "seconds": wall,
            "runs": seconds,
            "source_rows_per_s": rows / wall,
            "entity_rows_per_s": entities * len(VIEWS) / wall,
            "bytes_per_entity": statistics.median(memory) / entities,
            "keys": keys,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1.25M,12.5M", help="comma-separated: 1.25M,12.5M")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "fs-bench")
    parser.add_argument("--cluster", action="store_true", help="one server vs a local cluster")
    parser.add_argument("--replicas", type=int, default=1, help="per master, with --cluster")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    systems: list[tuple[str, Any, Any]]
    if args.cluster:
        systems = [
            ("ours, one server", ours, RedisServer),
            (
                f"ours, cluster 3+{3 * args.replicas}",
                ours,
                lambda: LocalCluster(replicas=args.replicas),
            ),
        ]
    else:
        systems = [("featurestore", ours, RedisServer), ("Feast 0.67", feast, RedisServer)]
    console = Console(width=130)
    load_before = os.getloadavg()[0]
    table = Table(
        title=f"materialize into Redis (medians of {args.repeat}; shared, noisy machine)",
        box=box.MARKDOWN,
    )
    for column in (
        "size",
        "system",
        "wall s",
        "source rows/s",
        "entity rows/s",
        "Redis bytes/entity",
        "Redis keys",
        "runs (s)",
    ):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="bench-materialize-") as tmp:
        for label in args.sizes.split(","):
            results = measure(label, args.data_dir, Path(tmp), args.repeat, systems)
            for system, r in results.items():
                table.add_row(
                    label,
                    system,
                    f"{r['seconds']:.2f}",
                    f"{r['source_rows_per_s']:,.0f}",
                    f"{r['entity_rows_per_s']:,.0f}",
                    f"{r['bytes_per_entity']:.0f}",
                    f"{r['keys']:,}",
                    " ".join(f"{s:.2f}" for s in r["runs"]),
                )
            a, b = (results[name] for name, _, _ in systems)
            table.add_row(
                label,
                "ratio",
                f"{b['seconds'] / a['seconds']:.2f}x the time"
                if args.cluster
                else f"{b['seconds'] / a['seconds']:.1f}x faster",
                f"{b['source_rows_per_s'] / a['source_rows_per_s']:.2f} of one server's"
                if args.cluster
                else "",
                "",
                f"{b['bytes_per_entity'] / a['bytes_per_entity']:.2f} of one server's"
                if args.cluster
                else f"{a['bytes_per_entity'] / b['bytes_per_entity']:.2f} of Feast's",
                "",
                "",
                end_section=True,
            )
    console.print(table)
    console.print(
        f"load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
        f"{os.cpu_count()} cores"
        + ("; cluster memory: masters only, replicas excluded" if args.cluster else "")
    )


if __name__ == "__main__":
    main()
