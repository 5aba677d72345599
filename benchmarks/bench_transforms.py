"""What one request-time transformation adds to a read for one entity: CPU time per call.

    .venv/bin/python benchmarks/bench_transforms.py [--calls 2000] [--entities 10000]

Data and views are bench_online_sdk.py's (quickstart-shaped, 6 features over 2 views, each
system on its own throwaway ``redis-server``), plus Feast's quickstart on-demand view
``transformed_conv_rate`` (two Float64 outputs: conv_rate plus each of two Int64 request
fields), defined the same way on both sides. Three measurements, each "without" (the 6
features) against "with" (the same and the 2 transformed ones), in interleaved blocks:

* ``get_online_features(...).to_dict()`` for one entity, ours and Feast 0.67's SDK (under
  ``.venv-feast``, benchmarks/feast_transforms.py): CPU time per call of the calling process;
* ``POST /predict`` for one entity at one connection: two ``featurestore serve`` processes
  (one worker each), one serving a model on the 6 features, the other a model on the 8; CPU
  time per request of the server process (psutil), and the client's latency.

The answers of both SDKs are compared first. The machine is shared: compare the added CPU
of one run, not absolute values across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
from bench_online_sdk import FEAST_PYTHON, FEATURES, VIEWS, generate, percentile, requests
from redis_server import RedisServer
from rich.console import Console
from rich.table import Table

from featurestore import FeatureStore, models

ODFV = ["transformed_conv_rate:conv_rate_plus_val1", "transformed_conv_rate:conv_rate_plus_val2"]
WITH = FEATURES + ODFV
WITH_PYTHON = FEATURES + [ref.replace(":", "_python:") for ref in ODFV]
ROUNDS = 4
WARMUP = 200
DEFINITIONS = """\
from datetime import timedelta

import pandas as pd

from featurestore import (
    Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, on_demand_feature_view,
)
from featurestore.types import Float32, Float64, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"])
{views}
vals_to_add = RequestSource(
    name="vals_to_add",
    schema=[Field(name="val_to_add", dtype=Int64), Field(name="val_to_add_2", dtype=Int64)],
)


@on_demand_feature_view(
    sources=[driver_hourly_stats, vals_to_add],
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


@on_demand_feature_view(
    sources=[driver_hourly_stats, vals_to_add],
    schema=[
        Field(name="conv_rate_plus_val1", dtype=Float64),
        Field(name="conv_rate_plus_val2", dtype=Float64),
    ],
    mode="python",
)
def transformed_conv_rate_python(inputs: dict) -> dict:
    rates = inputs["conv_rate"]
    return {
        "conv_rate_plus_val1": [
            None if r is None or v is None else r + v for r, v in zip(rates, inputs["val_to_add"])
        ],
        "conv_rate_plus_val2": [
            None if r is None or v is None else r + v for r, v in zip(rates, inputs["val_to_add_2"])
        ],
    }


plain = FeatureService(name="plain", features=[driver_hourly_stats, driver_daily_stats])
transformed = FeatureService(
    name="transformed", features=[driver_hourly_stats, driver_daily_stats, transformed_conv_rate]
)
"""
VIEW = """
{name} = FeatureView(
    name="{name}", entities=[driver], ttl=timedelta(days=1),
    schema=[Field(name="driver_id", dtype=Int64), {fields}],
    source=FileSource(path="{path}", timestamp_field="event_timestamp",
                      created_timestamp_column="created"),
)
"""
REQUEST = {"val_to_add": 1000, "val_to_add_2": 2000}


def our_repo(workdir: Path, sources: dict[str, Path], server: RedisServer) -> Path:
    repo = workdir / "ours"
    repo.mkdir()
    (repo / "featurestore.yaml").write_text(
        "project: bench\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
        f"online_store: {server.online_store}\nfeature_log: {{path: data/feature_log}}\n"
    )
    views = "".join(
        VIEW.format(
            name=view,
            fields=", ".join(f'Field(name="{n}", dtype={d})' for n, d in fields),
            path=sources[view],
        )
        for view, fields in VIEWS.items()
    )
    (repo / "definitions.py").write_text(DEFINITIONS.replace("{views}", views))
    return repo


class OurSDK:
    def __init__(self, repo: Path, ids: list[list[int]]) -> None:
        self.fs = FeatureStore(repo)
        self.rows = [[{"driver_id": i, **REQUEST}] for (i,) in ids]
        self.lists = {"base": FEATURES, "with": WITH, "python": WITH_PYTHON}
        self.first = {which: self.call(which, 0) for which in self.lists}
        for n in range(WARMUP):
            for which in self.lists:
                self.call(which, n)

    def call(self, which: str, n: int) -> dict:
        return self.fs.get_online_features(
            self.lists[which], self.rows[n % len(self.rows)]
        ).to_dict()

    def block(self, which: str, calls: int, offset: int) -> tuple[list[float], float]:
        latencies = []
        cpu = time.process_time()
        for n in range(offset, offset + calls):
            began = time.perf_counter()
            self.call(which, n)
            latencies.append(time.perf_counter() - began)
        return latencies, time.process_time() - cpu


class FeastSDK:
    def __init__(self, workdir: Path, sources: dict[str, Path], server: RedisServer,
                 start: datetime, end: datetime, ids: list[list[int]]) -> None:  # fmt: skip
        job = {
            "workdir": str(workdir / "feast"),
            "redis": f"127.0.0.1:{server.port}",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "key": "driver_id",
            "views": [
                {
                    "name": v,
                    "source": str(sources[v]),
                    "features": [{"name": n, "dtype": d} for n, d in fields],
                }
                for v, fields in VIEWS.items()
            ],
            "features": FEATURES,
            "with": WITH,
            "ids": ids,
        }
        path = workdir / "feast_transforms.json"
        path.write_text(json.dumps(job))
        self.stderr = workdir / "feast_stderr.txt"
        with self.stderr.open("w") as stderr:
            self.process = subprocess.Popen(
                [str(FEAST_PYTHON), str(Path(__file__).with_name("feast_transforms.py")), str(path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )  # fmt: skip
        self.first = self._answer()["first"]

    def _answer(self) -> dict:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.process.kill()
        sys.exit(f"Feast's side failed:\n{self.stderr.read_text()[-3000:]}")

    def block(self, which: str, calls: int, offset: int) -> tuple[list[float], float]:
        assert self.process.stdin is not None
        self.process.stdin.write(
            json.dumps({"which": which, "calls": calls, "offset": offset}) + "\n"
        )
        self.process.stdin.flush()
        answer = self._answer()
        return answer["latencies"], answer["cpu"]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


class Server:
    """``featurestore serve`` of one model, one worker; requests at one connection."""

    def __init__(self, repo: Path, model: Path, ids: list[list[int]]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.log = repo.parent / f"serve-{model.name}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(repo),
                 "--model", str(model), "--port", str(port)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    sys.exit(f"the server did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.1)
        self.bodies = [
            json.dumps({"entities": {"driver_id": [i], **{k: [v] for k, v in REQUEST.items()}}})
            for (i,) in ids
        ]
        self.ps = psutil.Process(self.process.pid)
        for n in range(WARMUP):
            self.predict(n)

    def predict(self, n: int) -> httpx.Response:
        answer = self.client.post(
            "/predict", content=self.bodies[n % len(self.bodies)],
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        answer.raise_for_status()
        return answer

    def cpu(self) -> float:
        times = [self.ps.cpu_times(), *(c.cpu_times() for c in self.ps.children(recursive=True))]
        return sum(t.user + t.system for t in times)

    def block(self, calls: int, offset: int) -> tuple[list[float], float]:
        latencies = []
        cpu = self.cpu()
        for n in range(offset, offset + calls):
            began = time.perf_counter()
            self.predict(n)
            latencies.append(time.perf_counter() - began)
        return latencies, self.cpu() - cpu

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=60)


def train(repo: Path, service: str, out: Path, end: datetime, drivers: int) -> Path:
    """A small model (30 trees) on ``service`` (labels: rating above its median)."""
    rng = np.random.default_rng(3)
    n = 2000
    entities = pd.DataFrame(
        {
            "driver_id": rng.integers(1001, 1001 + drivers, n),
            "event_timestamp": [end - timedelta(minutes=int(m)) for m in rng.integers(0, 60, n)],
            "val_to_add": rng.integers(0, 5, n),
            "val_to_add_2": rng.integers(0, 5, n),
            "label": rng.integers(0, 2, n),
        }
    )
    models.train(repo, service=service, entities=entities, label="label", out=out,
                 num_boost_round=30, progress=False, threads=1)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--entities", type=int, default=10_000)
    args = parser.parse_args()
    if not FEAST_PYTHON.exists():
        sys.exit(f"Feast's venv is missing ({FEAST_PYTHON}): run 'make feast' first")
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(days=1)
    ids = requests(args.entities, 1, 500)
    servers = {"ours": RedisServer(), "feast": RedisServer()}
    http: dict[str, Server] = {}
    results: dict[str, dict[str, tuple[list[float], float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            sources = generate(workdir, args.entities, end)
            repo = our_repo(workdir, sources, servers["ours"])
            store = FeatureStore(repo)
            store.apply()
            store.materialize(start, end)
            ours = OurSDK(repo, ids)
            feast = FeastSDK(workdir, sources, servers["feast"], start, end, ids)
            for service in ("plain", "transformed"):
                model = train(repo, service, workdir / f"model-{service}", end, args.entities)
                http[service] = Server(repo, model, ids)
            load_before = os.getloadavg()[0]
            per_block = args.calls // ROUNDS
            sides = {
                "ours SDK": (ours.block, "base", "with"),
                "ours SDK, mode='python'": (ours.block, "base", "python"),
                "Feast SDK": (feast.block, "base", "with"),
                "ours /predict": (None, "plain", "transformed"),
            }
            for round_ in range(ROUNDS):
                for name, (block, without, with_) in sides.items():
                    for which in (without, with_) if round_ % 2 == 0 else (with_, without):
                        offset = round_ * per_block
                        lat, cpu = (
                            http[which].block(per_block, offset)
                            if block is None
                            else block(which, per_block, offset)
                        )
                        got = results.setdefault(name, {}).setdefault(which, ([], 0.0))
                        results[name][which] = (got[0] + lat, got[1] + cpu)
            load_after = os.getloadavg()[0]
            function_alone = _function_alone(ours)
            same = _compare(ours.first, feast.first)
            feast.close()
            store.close()
    finally:
        for server in http.values():
            server.stop()
        for redis_server in servers.values():
            redis_server.stop()

    console = Console(width=130)
    table = Table(title=f"One entity, {args.calls} calls each (ms; CPU per call)")
    for column in ("call", "without p50", "with p50", "without CPU", "with CPU", "added CPU"):
        table.add_column(column, justify="right")
    lines = []
    for name, (_, without, with_) in sides.items():
        lat_a, cpu_a = results[name][without]
        lat_b, cpu_b = results[name][with_]
        row = [
            name,
            f"{percentile(lat_a, 50):.3f}",
            f"{percentile(lat_b, 50):.3f}",
            f"{cpu_a / args.calls * 1000:.3f}",
            f"{cpu_b / args.calls * 1000:.3f}",
            f"{(cpu_b - cpu_a) / args.calls * 1000:.3f}",
        ]
        lines.append(row)
        table.add_row(*row)
    console.print(table)
    console.print(
        f"of which the function's own pandas work (called alone on its input frame, "
        f"{args.calls} calls): {function_alone * 1000:.3f} ms per call"
    )
    console.print(f"load average (1 min) {load_before:.1f} before, {load_after:.1f} after, 2 cores")
    console.print(same)
    print("\nMarkdown (README):\n")
    print("| call (1 entity) | p50 without / with | CPU without / with | added CPU per call |")
    print("|---|---|---|---|")
    for name, a50, b50, acpu, bcpu, added in lines:
        print(f"| {name} | {a50} / {b50} ms | {acpu} / {bcpu} ms | {added} ms |")


def _function_alone(ours: OurSDK) -> float:
    """CPU seconds per call of the pandas function itself, on a fresh copy of its input."""
    from featurestore.online.read import _requests, read_online
    from featurestore.transforms import _call, input_frame

    reader = ours.fs._online_reader()
    plan = reader.plan(WITH, False)[0]
    step = plan.transformations[0]
    response = read_online(reader.store, plan, ours.rows[0], None)
    _, columns, _ = _requests(plan, ours.rows[0])
    values = {**columns, **response.logged_values()}
    frame = input_frame(step, values, 1)
    frames = [frame.copy() for _ in range(1000)]
    cpu = time.process_time()
    for copy in frames:
        _call(step, copy)
    return (time.process_time() - cpu) / len(frames)


def _compare(ours: dict, feast: dict) -> str:
    """Whether the two SDKs answered the same (the first call of each list)."""
    import math

    problems = []
    for which in ("base", "with"):
        for name, values in ours[which].items():
            for a, b in zip(values, feast[which][name], strict=True):
                if a != b and not (isinstance(a, float) and math.isclose(a, b)):
                    problems.append(f"{which} {name}: ours {a!r}, Feast {b!r}")
    return (
        "answers identical (first call of each list)"
        if not problems
        else "DIFFER: " + "; ".join(problems)
    )


if __name__ == "__main__":
    main()
