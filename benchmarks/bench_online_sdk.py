"""Online reads from Python, ours vs Feast 0.67's SDK (or, with --cluster, ours on one server
vs ours on a local Redis Cluster), on the same data in one run.

    .venv/bin/python benchmarks/bench_online_sdk.py [--calls 2000] [--entities 10000]
    .venv/bin/python benchmarks/bench_online_sdk.py --cluster

Data shaped like Feast's quickstart: one ``driver_id`` (Int64) entity, two views
(``driver_hourly_stats``: conv_rate Float32, acc_rate Float32, avg_daily_trips Int64,
vehicle_type String; ``driver_daily_stats``: lifetime_trips Int64, rating Float64), three
rows per driver and view in the last hours (ttl 1 day, so every value is PRESENT). Each
system materializes the same Parquet files into its OWN throwaway ``redis-server``, then
times ``get_online_features(features=<all 6>, entity_rows=...).to_dict()`` for ``--calls``
calls of 1 entity and of 100 entities (random drivers, the same lists for both, after 200
warm-up calls each), in 4 interleaved blocks per system so that both see the same load.
Feast runs under ``.venv-feast`` as a subprocess (benchmarks/feast_online_sdk.py) that
times its own calls block by block when told; ours runs in this process. The first
answers of both are compared value by value, and ``used_memory`` per driver is read from
each server. "CPU" is the mean CPU time per call of the calling process (user + system),
which the load on the machine disturbs far less than wall-clock percentiles.

``--cluster``: the two sides are ours on one ``redis-server`` and ours on a local cluster of
3 masters and 3 replicas (benchmarks/redis_server.py), the same calls interleaved the same
way; memory per driver is summed over the masters only (replicas hold copies), less what
replication holds there.

The machine is shared (2 cores, other jobs running): p99 especially is noisy, so the table
says what one run saw.
"""

from __future__ import annotations

import argparse
import json
import math
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
from redis_server import LocalCluster, RedisServer
from rich.console import Console
from rich.table import Table

from featurestore import FeatureStore

ROOT = Path(__file__).resolve().parent.parent
FEAST_PYTHON = Path(os.environ.get("FEATURESTORE_FEAST_PYTHON", ROOT / ".venv-feast/bin/python"))
VIEWS = {
    "driver_hourly_stats": [
        ("conv_rate", "Float32"),
        ("acc_rate", "Float32"),
        ("avg_daily_trips", "Int64"),
        ("vehicle_type", "String"),
    ],
    "driver_daily_stats": [("lifetime_trips", "Int64"), ("rating", "Float64")],
}
FEATURES = [f"{view}:{name}" for view, fields in VIEWS.items() for name, _ in fields]
FIRST_ID = 1001
ROWS_PER_DRIVER = 3
WARMUP = 200
ROUNDS = 4  # blocks per system and request size, interleaved

DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, FileSource
from featurestore.types import Float32, Float64, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"])
"""
VIEW_TEMPLATE = """
{name} = FeatureView(
    name="{name}",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[Field(name="driver_id", dtype=Int64), {fields}],
    source=FileSource(
        path="{path}", timestamp_field="event_timestamp", created_timestamp_column="created"
    ),
)
"""


def generate(data_dir: Path, drivers: int, end: datetime, seed: int = 7) -> dict[str, Path]:
    """Parquet sources: ROWS_PER_DRIVER rows per driver and view, in the 6 hours before end."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(FIRST_ID, FIRST_ID + drivers, dtype=np.int64), ROWS_PER_DRIVER)
    n = len(ids)
    ts = pa.timestamp("us", tz="UTC")
    end_us = int(end.timestamp() * 1_000_000)
    paths = {}
    for view, fields in VIEWS.items():
        event = end_us - rng.integers(0, 6 * 3600 * 1_000_000, n)
        columns: dict[str, pa.Array] = {
            "driver_id": pa.array(ids),
            "event_timestamp": pa.array(event).cast(ts),
            "created": pa.array(event + rng.integers(0, 60_000_000, n)).cast(ts),
        }
        for name, dtype in fields:
            if dtype == "Float32":
                columns[name] = pa.array(rng.random(n, dtype=np.float32))
            elif dtype == "Float64":
                columns[name] = pa.array(rng.random(n) * 5)
            elif dtype == "Int64":
                columns[name] = pa.array(rng.integers(0, 10_000, n))
            else:
                columns[name] = pa.array(rng.choice(["sedan", "suv", "van", "bike"], n))
        paths[view] = data_dir / f"{view}.parquet"
        pq.write_table(pa.table(columns), paths[view])
    return paths


def requests(drivers: int, size: int, count: int, seed: int = 11) -> list[list[int]]:
    rng = np.random.default_rng(seed + size)
    ids = rng.integers(FIRST_ID, FIRST_ID + drivers, (count, size))
    return [[int(i) for i in row] for row in ids]


class Ours:
    """Our repo on ``server``: applied, materialized, warmed up; times blocks of calls."""

    def __init__(
        self, workdir: Path, sources: dict[str, Path], server: RedisServer | LocalCluster,
        start: datetime, end: datetime, id_lists: dict[str, list[list[int]]],
    ) -> None:  # fmt: skip
        repo = workdir / f"ours-{type(server).__name__}"
        repo.mkdir()
        (repo / "featurestore.yaml").write_text(
            "project: bench\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
            f"online_store: {server.online_store}\n"
        )
        text = DEFINITIONS
        for view, fields in VIEWS.items():
            declared = ", ".join(f'Field(name="{n}", dtype={d})' for n, d in fields)
            text += VIEW_TEMPLATE.format(name=view, fields=declared, path=sources[view])
        (repo / "definitions.py").write_text(text)
        self.fs = FeatureStore(repo)
        self.fs.apply()
        self.fs.materialize(start, end)
        self.requests = {
            size: [[{"driver_id": i} for i in ids] for ids in lists]
            for size, lists in id_lists.items()
        }
        self.first = {
            size: self.fs.get_online_features(FEATURES, rows[0]).to_dict()
            for size, rows in self.requests.items()
        }
        for rows in self.requests.values():
            for n in range(WARMUP):
                self.fs.get_online_features(FEATURES, rows[n % len(rows)]).to_dict()

    def block(self, size: str, calls: int, offset: int) -> tuple[list[float], float]:
        """Latencies of ``calls`` calls, and their CPU time."""
        rows = self.requests[size]
        latencies = []
        cpu = time.process_time()
        for n in range(offset, offset + calls):
            entity_rows = rows[n % len(rows)]
            began = time.perf_counter()
            self.fs.get_online_features(FEATURES, entity_rows).to_dict()
            latencies.append(time.perf_counter() - began)
        return latencies, time.process_time() - cpu

    def close(self) -> None:
        self.fs.close()


class Feast:
    """Feast's side: benchmarks/feast_online_sdk.py under its venv, driven block by block."""

    def __init__(
        self, workdir: Path, sources: dict[str, Path], server: RedisServer, start: datetime,
        end: datetime, id_lists: dict[str, list[list[int]]],
    ) -> None:  # fmt: skip
        job = {
            "workdir": str(workdir / "feast"),
            "redis": f"127.0.0.1:{server.port}",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "key": "driver_id",
            "views": [
                {
                    "name": view,
                    "source": str(sources[view]),
                    "features": [{"name": n, "dtype": d} for n, d in fields],
                }
                for view, fields in VIEWS.items()
            ],
            "features": FEATURES,
            "requests": id_lists,
        }
        job_path = workdir / "feast_job.json"
        job_path.write_text(json.dumps(job))
        self.stderr = workdir / "feast_stderr.txt"
        with self.stderr.open("w") as stderr:  # a file: a full pipe would stall Feast
            self.process = subprocess.Popen(
                [str(FEAST_PYTHON), str(Path(__file__).with_name("feast_online_sdk.py")),
                 str(job_path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )  # fmt: skip
        self.first = self._answer()["first"]

    def _answer(self) -> dict:
        """The next JSON line Feast's side prints (its materialize prints other lines too)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.process.kill()
        sys.exit(f"Feast's side failed:\n{self.stderr.read_text()[-3000:]}")

    def block(self, size: str, calls: int, offset: int) -> tuple[list[float], float]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"size": size, "calls": calls, "offset": offset}))
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        answer = self._answer()
        return answer["latencies"], answer["cpu"]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def same_answers(ours_first: dict[str, dict], feast_first: dict[str, dict]) -> list[str]:
    """Differences between the two systems' first answers (value by value)."""
    problems = []
    for size, mine in ours_first.items():
        theirs = feast_first[size]
        for name in ["driver_id", *(ref.split(":")[1] for ref in FEATURES)]:
            for i, (a, b) in enumerate(zip(mine[name], theirs[name], strict=True)):
                close = isinstance(a, float) and isinstance(b, float) and math.isclose(a, b)
                if a != b and not close:
                    problems.append(f"{size} entities, row {i}, {name}: ours {a!r}, Feast {b!r}")
    return problems


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--cluster", action="store_true", help="one server vs a local cluster")
    args = parser.parse_args()
    if not args.cluster and not FEAST_PYTHON.exists():
        sys.exit(f"Feast's venv is missing ({FEAST_PYTHON}): run 'make feast' first")

    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(days=1)
    id_lists = {"1": requests(args.entities, 1, 500), "100": requests(args.entities, 100, 50)}
    # (label, server, side class): the first is "ours" in the ratios, the second the other
    names = ("one server", "cluster 3+3") if args.cluster else ("ours", "Feast 0.67")
    servers: dict[str, RedisServer | LocalCluster] = {names[0]: RedisServer()}
    servers[names[1]] = LocalCluster() if args.cluster else RedisServer()
    kinds: tuple[type, type] = (Ours, Ours) if args.cluster else (Ours, Feast)
    latencies: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    cpu: dict[str, dict[str, float]] = {name: {} for name in names}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            sources = generate(workdir, args.entities, end)
            sides = {
                name: kind(workdir, sources, servers[name], start, end, id_lists)
                for name, kind in zip(names, kinds, strict=True)
            }
            load_before = os.getloadavg()[0]
            per_block = args.calls // ROUNDS
            for round_ in range(ROUNDS):  # interleaved, so both see the same machine load
                order = list(names) if round_ % 2 == 0 else list(reversed(names))
                for size in id_lists:
                    for name in order:
                        lat, used = sides[name].block(size, per_block, round_ * per_block)
                        latencies[name].setdefault(size, []).extend(lat)
                        cpu[name][size] = cpu[name].get(size, 0.0) + used / args.calls
            load_after = os.getloadavg()[0]
            firsts = {name: side.first for name, side in sides.items()}
            for side in sides.values():
                side.close()
            memory = {
                name: (s.used_memory() - s.baseline) / args.entities for name, s in servers.items()
            }
    finally:
        for server in servers.values():
            server.stop()

    a, b = names
    problems = same_answers(firsts[a], firsts[b])
    console = Console(width=130)
    table = Table(
        title=f"get_online_features from Python: 6 features over 2 views, {args.calls} calls "
        "(ms; CPU = mean CPU time per call; shared noisy machine)"
    )
    columns = ["request", *(f"{n} {m}" for n in names for m in ("p50", "p99", "CPU"))]
    for column in (*columns, "p50 x", "p99 x", "CPU x"):
        table.add_column(column, justify="right")
    rows: list[list[str]] = []
    for size, label in (("1", "1 entity"), ("100", "100 entities")):
        o50, o99 = percentile(latencies[a][size], 50), percentile(latencies[a][size], 99)
        f50, f99 = percentile(latencies[b][size], 50), percentile(latencies[b][size], 99)
        ocpu, fcpu = cpu[a][size] * 1000, cpu[b][size] * 1000
        row = [label, f"{o50:.3f}", f"{o99:.3f}", f"{ocpu:.3f}", f"{f50:.3f}", f"{f99:.3f}",
               f"{fcpu:.3f}", f"{f50 / o50:.2f}x", f"{f99 / o99:.2f}x", f"{fcpu / ocpu:.2f}x"]  # fmt: skip
        rows.append(row)
        table.add_row(*row)
    console.print(table)
    masters = " (cluster: masters only, replicas excluded)" if args.cluster else ""
    console.print(
        f"Redis used_memory per driver (2 views){masters}: {a} {memory[a]:.0f} B, "
        f"{b} {memory[b]:.0f} B"
    )
    console.print(f"load average (1 min) {load_before:.1f} before, {load_after:.1f} after, 2 cores")
    console.print(
        "answers identical (first request of each size)"
        if not problems
        else "[red]answers differ:[/red]\n" + "\n".join(problems[:20])
    )
    print("\nMarkdown (README):\n")
    print(f"| request | {a} p50 / p99 / CPU | {b} p50 / p99 / CPU | {b} / {a}: p50 / p99 / CPU |")
    print("|---|---|---|---|")
    for cells in rows:
        name, ours_cells, theirs_cells, ratios = cells[0], cells[1:4], cells[4:7], cells[7:]
        print(
            f"| {name} | {' / '.join(ours_cells)} ms | {' / '.join(theirs_cells)} ms "
            f"| {' / '.join(ratios)} |"
        )
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
