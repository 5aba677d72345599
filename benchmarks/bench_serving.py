"""The prediction service over HTTP, side by side with Feast 0.67's ``feast serve``, in one run.

    .venv/bin/python benchmarks/bench_serving.py [--duration 10] [--rounds 3] [--workers 1 2]

Needs ``wrk`` (Debian: ``apt-get install -y wrk``; this script installs nothing) and Feast's
venv (``make feast``). Data shaped like Feast's quickstart (benchmarks/bench_online_sdk.py: one
``driver_id`` entity, two views, 6 features, every value PRESENT), the same Parquet files
materialized by each system into its OWN throwaway ``redis-server``. Bounded load over
loopback with wrk (a Lua script draws a random driver per request, seeded), each point
``--duration`` seconds, one server loaded at a time (the three run side by side, idle
between their turns), in ``--rounds`` rounds: at each number of connections ours, bare and
Feast back to back, so a burst of load from the machine's other jobs hits all three:

- ours ``POST /get-online-features`` (6 features, 1 entity) and Feast's ``feast serve
  --max-requests 0 --no-access-log`` (else it restarts its worker every 1,000 requests), at 1
  and 2 workers, 1 / 16 / 64 connections;
- a bare FastAPI + redis.asyncio endpoint doing one pipelined HMGET on our Redis layout, no
  decoding (benchmarks/bare_endpoint.py): the practical limit of this machine, same workers;
- ours ``POST /predict`` (a 100-tree LightGBM model on the 6 features, one thread) for
  1 entity at 1 / 4 / 16 connections and 100 entities at 4 connections, at 1 and 2 workers.

Reports requests/s, p50 and p99 (wrk's latency distribution; the median over rounds) and
the ratios (each the median of the rounds' own ratios, with their range); any non-2xx
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
from statistics import median
from typing import Any

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
BODIES = {"ours": FEATURES_BODY, "feast": FEATURES_BODY, "bare": PREDICT_BODY}  # bare: ids only


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


def warm(server: Server, path: str, template: str) -> None:
    for _ in range(200):
        httpx.post(f"http://127.0.0.1:{server.port}{path}", timeout=30,
                   content=template.replace('"IDS"', str(FIRST_ID)),
                   headers={"Content-Type": "application/json"})  # fmt: skip


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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three systems (3)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="(1 2)")
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
    results: list[dict[str, Any]] = []
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
            for workers in args.workers:
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
                running: dict[str, Server] = {}
                try:
                    for name, start_server in servers.items():
                        running[name] = start_server(free_port())
                    if workers == args.workers[0]:
                        same_answer(running["ours"], running["feast"])
                        console.print("answers identical (ours and feast serve, 2 drivers)")
                    for name, server in running.items():
                        warm(server, "/get-online-features", BODIES[name])
                    # the three systems one after the other at each point, in rounds: a burst of
                    # load from the machine's other jobs hits all of them, and the ratios of one
                    # round compare like with like
                    for round_ in range(args.rounds):
                        for connections in (1, 16, 64):
                            for name in ("ours", "bare", "feast"):
                                point = wrk(running[name].port, "/get-online-features",
                                            BODIES[name], 1, args.entities, connections,
                                            args.duration, workdir)  # fmt: skip
                                results.append({"system": name, "path": "/get-online-features",
                                                "workers": workers, "entities": 1,
                                                "connections": connections, "round": round_,
                                                **point})  # fmt: skip
                                loads.append(os.getloadavg()[0])
                                console.print(results[-1])
                    warm(running["ours"], "/predict", PREDICT_BODY)
                    for size, connections in [(1, 1), (1, 4), (1, 16), (100, 4)]:
                        point = wrk(running["ours"].port, "/predict", PREDICT_BODY, size,
                                    args.entities, connections, args.duration, workdir)  # fmt: skip
                        results.append({"system": "ours", "path": "/predict", "workers": workers,
                                        "entities": size, "connections": connections, "round": 0,
                                        **point})  # fmt: skip
                        loads.append(os.getloadavg()[0])
                        console.print(results[-1])
                finally:
                    for server in running.values():
                        server.stop()
    finally:
        for redis_server in redis.values():
            redis_server.stop()
    report(console, results, loads, args.duration)


def report(
    console: Console, results: list[dict[str, Any]], loads: list[float], duration: int
) -> None:
    """Per point the median over rounds; each ratio is the median of the ratios of one round
    (ours and the other system measured back to back), with their range."""
    Key = tuple[object, ...]

    def key(r: dict[str, Any], system: object | None = None) -> Key:
        return (system or r["system"], r["path"], r["workers"], r["entities"], r["connections"])

    points: dict[Key, list[dict[str, Any]]] = {}
    for r in results:
        points.setdefault(key(r), []).append(r)
    by_round = {(*key(r), r["round"]): r for r in results}

    def ratio(k: Key, other: str, field: str, fmt: str) -> str:
        pairs = [
            (r[field], by_round.get((other, *k[1:], r["round"])))
            for r in points[k]  # the rounds of ours
        ]
        values = sorted(mine / theirs[field] for mine, theirs in pairs if theirs)
        if not values:
            return ""
        spread = f" ({values[0]:{fmt}}-{values[-1]:{fmt}})" if len(values) > 1 else ""
        return f"{median(values):{fmt}}{spread}"

    names = {
        "ours": "ours",
        "feast": "Feast 0.67 feast serve",
        "bare": "bare FastAPI + redis.asyncio",
    }
    table = Table(
        title=f"HTTP, loopback, wrk, {duration} s per point (ms; 2 cores shared with wrk)"
    )
    for column in ("endpoint", "system", "workers", "entities", "conns", "rounds", "req/s", "p50",
                   "p99", "non-2xx", "req/s vs Feast", "req/s vs bare", "p99 vs bare"):  # fmt: skip
        table.add_column(column, justify="right")
    lines = []
    for k, rounds in points.items():
        system, path, workers, entities, connections = k
        vs_feast = vs_bare = p99_bare = ""
        if system == "ours" and path == "/get-online-features":
            vs_feast = ratio(k, "feast", "rps", ".1f")
            vs_bare = ratio(k, "bare", "rps", ".0%")
            p99_bare = ratio(k, "bare", "p99", ".1f")
        rps, p50, p99 = (median([r[f] for r in rounds]) for f in ("rps", "p50", "p99"))
        errors = sum(r["errors"] for r in rounds)
        row = [str(path), names[str(system)], str(workers), str(entities), str(connections),
               str(len(rounds)), f"{rps:,.0f}", f"{p50:.2f}", f"{p99:.2f}", f"{errors:.0f}",
               vs_feast, vs_bare, p99_bare]  # fmt: skip
        table.add_row(*row)
        lines.append("| " + " | ".join(row) + " |")
    console.print(table)
    console.print(f"load average (1 min) from {min(loads):.1f} to {max(loads):.1f}, 2 cores")
    print("\nMarkdown (README):\n")
    print("| endpoint | system | workers | entities | connections | rounds | req/s | p50 ms | p99 ms "
          "| non-2xx | req/s vs Feast | req/s vs bare | p99 vs bare |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
