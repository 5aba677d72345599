"""The prediction service over HTTP, side by side with Feast 0.67's ``feast serve``, in one run.

    .venv/bin/python benchmarks/bench_serving.py [--duration 10] [--entities 10000]

Needs ``wrk`` (Debian: ``apt-get install -y wrk``; this script installs nothing) and Feast's
venv (``make feast``). Data shaped like Feast's quickstart (benchmarks/bench_online_sdk.py: one
``driver_id`` entity, two views, 6 features, every value PRESENT), the same Parquet files
materialized by each system into its OWN throwaway ``redis-server``. Bounded load over
loopback with wrk (a Lua script draws a random driver per request, seeded), each point
``--duration`` seconds, one server at a time:

- ours ``POST /get-online-features`` (6 features, 1 entity) and Feast's ``feast serve
  --max-requests 0 --no-access-log`` (else it restarts its worker every 1,000 requests), at 1
  and 2 workers, 1 / 16 / 64 connections;
- a bare FastAPI + redis.asyncio endpoint doing one pipelined HMGET on our Redis layout, no
  decoding (benchmarks/bare_endpoint.py): the practical limit of this machine, same workers;
- ours ``POST /predict`` (a 100-tree LightGBM model on the 6 features, one thread) for
  1 entity at 1 / 4 / 16 connections and 100 entities at 4 connections, at 1 and 2 workers.

Reports requests/s, p50 and p99 (wrk's latency distribution) and the ratios; any non-2xx
answer is reported. Both systems' answers for one driver are checked equal first. The load
generator shares the 2 cores with the servers, and the machine may be shared: the table
gives the load average; compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
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
from bench_online_sdk import DEFINITIONS, FEATURES, FIRST_ID, VIEW_TEMPLATE, VIEWS, generate
from redis_server import RedisServer
from rich.console import Console
from rich.table import Table

from featurestore import FeatureStore, models

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
FEAST_PYTHON = Path(os.environ.get("FEATURESTORE_FEAST_PYTHON", ROOT / ".venv-feast/bin/python"))
LUA = """
math.randomseed(7)
request = function()
  local ids = {{}}
  for i = 1, {size} do ids[i] = math.random({first}, {last}) end
  local body = string.format({template!r}, table.concat(ids, ","))
  return wrk.format("POST", "{path}", {{["Content-Type"] = "application/json"}}, body)
end
"""
FEATURES_BODY = json.dumps({"features": FEATURES, "entities": {"driver_id": ["IDS"]}})
PREDICT_BODY = json.dumps({"entities": {"driver_id": ["IDS"]}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One HTTP server process (and its workers), stopped by its own PID."""

    def __init__(self, command: list[str], port: int, log: Path, env: dict[str, str]) -> None:
        self.port = port
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"{command[0]} exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"{command} did not answer /health:\n{log.read_text()[-3000:]}")

    def post(self, path: str, body: object) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{self.port}{path}", json=body, timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wrk(port: int, path: str, template: str, size: int, drivers: int, connections: int,
        duration: int, workdir: Path) -> dict[str, float]:  # fmt: skip
    """One load point: requests/s, p50 and p99 in ms, and the non-2xx count."""
    script = workdir / "load.lua"
    body = template.replace('"IDS"', "%s")
    script.write_text(
        LUA.format(size=size, first=FIRST_ID, last=FIRST_ID + drivers - 1, template=body, path=path)
    )
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s",
         str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: .*", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": ms("50%"),
        "p99": ms("99%"),
        "errors": float(errors.group(1)) if errors else 0.0,
        "socket_errors": socket_errors.group(0) if socket_errors else "",  # type: ignore[dict-item]
    }


def build_ours(workdir: Path, sources: dict[str, Path], redis: RedisServer, start: datetime,
               end: datetime, drivers: int) -> tuple[Path, Path]:  # fmt: skip
    """Our repo (with a feature service), materialized, and a 100-tree model on it."""
    repo = workdir / "ours"
    repo.mkdir()
    (repo / "featurestore.yaml").write_text(
        "project: bench\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
        f"online_store: {{type: redis, url: 'redis://127.0.0.1:{redis.port}/0', socket_timeout: 2}}\n"
        "feature_log: {path: data/feature_log}\n"
    )
    text = DEFINITIONS.replace("import Entity,", "import Entity, FeatureService,")
    for view, fields in VIEWS.items():
        declared = ", ".join(f'Field(name="{n}", dtype={d})' for n, d in fields)
        text += VIEW_TEMPLATE.format(name=view, fields=declared, path=sources[view])
    text += f"\ndrivers = FeatureService(name='drivers', features=[{', '.join(VIEWS)}])\n"
    (repo / "definitions.py").write_text(text)
    fs = FeatureStore(repo)
    fs.apply()
    fs.materialize(start, end)
    rng = np.random.default_rng(3)
    labels = pd.DataFrame(
        {
            "driver_id": rng.integers(FIRST_ID, FIRST_ID + drivers, 20_000),
            "event_timestamp": [
                end - timedelta(minutes=int(m)) for m in rng.integers(0, 120, 20_000)
            ],
            "label": rng.random(20_000) < 0.3,
        }
    )
    model = workdir / "model"
    models.train(repo, service="drivers", entities=labels, label="label", out=model,
                 num_boost_round=100, threads=1, progress=False)  # fmt: skip
    return repo, model


def build_feast(workdir: Path, sources: dict[str, Path], redis: RedisServer, start: datetime,
                end: datetime) -> Path:  # fmt: skip
    job = {
        "workdir": str(workdir / "feast"),
        "redis": f"127.0.0.1:{redis.port}",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "key": "driver_id",
        "views": [
            {
                "name": v,
                "source": str(sources[v]),
                "features": [{"name": n, "dtype": d} for n, d in f],
            }
            for v, f in VIEWS.items()
        ],
    }
    (workdir / "feast_job.json").write_text(json.dumps(job))
    result = subprocess.run(
        [str(FEAST_PYTHON), str(HERE / "feast_serve.py"), str(workdir / "feast_job.json")],
        capture_output=True, text=True, cwd=HERE,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"Feast's side failed:\n{result.stderr[-3000:]}")
    return workdir / "feast"


def same_answer(ours: Server, feast: Server) -> None:
    """Both servers answer the same values for a few drivers (float32 compared as float32)."""
    body = {"features": FEATURES, "entities": {"driver_id": [FIRST_ID, FIRST_ID + 7]}}
    answers = [s.post("/get-online-features", body).json() for s in (ours, feast)]
    a, b = (dict(zip(x["metadata"]["feature_names"], x["results"], strict=True)) for x in answers)
    assert set(a) == set(b), (a, b)  # Feast orders the columns its own way
    for name in a:
        for u, v in zip(a[name]["values"], b[name]["values"], strict=True):
            if isinstance(u, float) or isinstance(v, float):
                assert np.float32(u) == np.float32(v), (name, u, v)
            else:
                assert u == v, (name, u, v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per point (default 10)")
    parser.add_argument("--entities", type=int, default=10_000, help="drivers (default 10,000)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    if not FEAST_PYTHON.exists():
        sys.exit(f"Feast's venv is missing ({FEAST_PYTHON}): run 'make feast' first")
    feast_cli = FEAST_PYTHON.with_name("feast")
    console = Console(width=140)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(days=1)
    redis = {"ours": RedisServer(), "feast": RedisServer()}
    results: list[dict[str, object]] = []
    loads = [os.getloadavg()[0]]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            sources = generate(workdir, args.entities, end)
            repo, model = build_ours(workdir, sources, redis["ours"], start, end, args.entities)
            feast_repo = build_feast(workdir, sources, redis["feast"], start, end)
            bare_env = {
                "BARE_REDIS_URL": f"redis://127.0.0.1:{redis['ours'].port}/0",
                "BARE_PREFIX": "bench|driver_id=i",
                "BARE_FIELDS": "1,2",
            }
            for workers in (1, 2):
                servers = {
                    "ours": lambda port, w=workers: Server(
                        [sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(repo),
                         "--model", str(model), "--port", str(port), "--workers", str(w)],
                        port, workdir / "ours.log", {},
                    ),
                    "feast": lambda port, w=workers: Server(
                        [str(feast_cli), "-c", str(feast_repo), "serve", "-p", str(port),
                         "--max-requests", "0", "--no-access-log", "-w", str(w)],
                        port, workdir / "feast.log", {"FEAST_USAGE": "False"},
                    ),
                    "bare": lambda port, w=workers: Server(
                        [sys.executable, "-m", "uvicorn", "bare_endpoint:app", "--app-dir",
                         str(HERE), "--port", str(port), "--workers", str(w), "--no-access-log",
                         "--log-level", "warning"],
                        port, workdir / "bare.log", bare_env,
                    ),
                }  # fmt: skip
                if workers == 1:
                    ours, feast = servers["ours"](free_port()), servers["feast"](free_port())
                    same_answer(ours, feast)
                    ours.stop()
                    feast.stop()
                    console.print("answers identical (ours and feast serve, 2 drivers)")
                for name, path, template in (
                    ("ours", "/get-online-features", FEATURES_BODY),
                    ("feast", "/get-online-features", FEATURES_BODY),
                    ("bare", "/get-online-features", PREDICT_BODY),
                    ("ours", "/predict", PREDICT_BODY),
                ):
                    server = servers[name](free_port())
                    points = [(1, c) for c in (1, 16, 64)]
                    if path == "/predict":
                        points = [(1, 1), (1, 4), (1, 16), (100, 4)]
                    try:
                        httpx.post(f"http://127.0.0.1:{server.port}{path}", timeout=30,
                                   content=template.replace('"IDS"', str(FIRST_ID)),
                                   headers={"Content-Type": "application/json"})  # fmt: skip
                        for size, connections in points:
                            point = wrk(server.port, path, template, size, args.entities,
                                        connections, args.duration, workdir)  # fmt: skip
                            results.append({"system": name, "path": path, "workers": workers,
                                            "entities": size, "connections": connections, **point})  # fmt: skip
                            loads.append(os.getloadavg()[0])
                            console.print(results[-1])
                    finally:
                        server.stop()
    finally:
        for server in redis.values():
            server.stop()
    report(console, results, loads, args.duration)


def report(
    console: Console, results: list[dict[str, object]], loads: list[float], duration: int
) -> None:
    def find(
        system: str, path: str, workers: object, entities: object, connections: object
    ) -> dict[str, object] | None:
        for r in results:
            if (r["system"], r["path"], r["workers"], r["entities"], r["connections"]) == (
                system, path, workers, entities, connections
            ):  # fmt: skip
                return r
        return None

    names = {
        "ours": "ours",
        "feast": "Feast 0.67 feast serve",
        "bare": "bare FastAPI + redis.asyncio",
    }
    table = Table(
        title=f"HTTP, loopback, wrk, {duration} s per point (ms; 2 cores shared with wrk)"
    )
    for column in ("endpoint", "system", "workers", "entities", "conns", "req/s", "p50", "p99",
                   "non-2xx", "req/s vs Feast", "req/s vs bare", "p99 vs bare"):  # fmt: skip
        table.add_column(column, justify="right")
    lines = []
    for r in results:
        feast = find("feast", "/get-online-features", r["workers"], 1, r["connections"])
        bare = find("bare", "/get-online-features", r["workers"], 1, r["connections"])
        vs_feast = vs_bare = p99_bare = ""
        if r["system"] == "ours" and r["path"] == "/get-online-features":
            vs_feast = f"{r['rps'] / feast['rps']:.1f}x" if feast else ""  # type: ignore[operator]
            vs_bare = f"{r['rps'] / bare['rps']:.0%}" if bare else ""  # type: ignore[operator]
            p99_bare = f"{r['p99'] / bare['p99']:.1f}x" if bare else ""  # type: ignore[operator]
        row = [r["path"], names[str(r["system"])], str(r["workers"]), str(r["entities"]),
               str(r["connections"]), f"{r['rps']:,.0f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}",
               f"{r['errors']:.0f}", vs_feast, vs_bare, p99_bare]  # fmt: skip
        table.add_row(*row)
        lines.append("| " + " | ".join(row) + " |")
    console.print(table)
    console.print(f"load average (1 min) from {min(loads):.1f} to {max(loads):.1f}, 2 cores")
    print("\nMarkdown (README):\n")
    print("| endpoint | system | workers | entities | connections | req/s | p50 ms | p99 ms | non-2xx "
          "| req/s vs Feast | req/s vs bare | p99 vs bare |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
