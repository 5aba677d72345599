"""The prediction service as the tests run it: ``featurestore serve`` in its own process, on
127.0.0.1 and a free port, talked to over real HTTP; and the example repo it serves.

``ServiceProcess`` starts the command, waits for ``/health``, sends signals to its PID only,
and keeps its output in a file for failure messages. ``ExampleRepo`` is the example fraud
repo (feature_repo/, generated small, ending at the current hour) applied, with a tiny model
trained on it and everything materialized into a throwaway Redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "feature_repo"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """One ``featurestore serve`` process (and its workers); stopped by its own PID."""

    def __init__(
        self,
        repo: Path,
        model: Path,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        wait: bool = True,
        command: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = repo.parent / f"serve-{self.port}.log"
        self.command = command or [
            sys.executable,
            "-m",
            "featurestore.cli",
            "serve",
            "--repo",
            str(repo),
            "--model",
            str(model),
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        full_env = {**os.environ, "FEATURESTORE_SERVE_PORT": str(self.port), **(env or {})}
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, env=full_env
            )
        self.client = httpx.Client(base_url=self.url, timeout=30)
        if wait:
            try:
                self.wait_healthy()
            except BaseException:
                self.stop()  # never leave a server (or its workers) behind a failed start
                raise

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the service exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                if self.client.get("/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the service did not answer /health in {timeout} s:\n{self.log()}")

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, json=body, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample in ``/metrics`` (0.0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.client.get("/metrics").text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the process to exit; its exit code."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(
                    f"the service ignored SIGTERM for {timeout} s:\n{self.log()}"
                ) from None
        return self.process.returncode

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ExampleRepo:
    """The example repo, applied and materialized into ``redis_url``, and a model on it."""

    repo: Path
    model: Path
    redis_url: str
    # every copy materializes up to the same end: an aggregated view's values carry it
    end: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def log_path(self) -> Path:
        return self.repo / "data" / "feature_log"

    def copy(self, dest: Path, redis_url: str | None = None) -> ExampleRepo:
        """An independent copy (repo and model) pointed at ``redis_url`` (default: the same)."""
        shutil.copytree(self.repo, dest / "repo", ignore=shutil.ignore_patterns("feature_log"))
        shutil.copytree(self.model, dest / "model")
        copy = ExampleRepo(dest / "repo", dest / "model", redis_url or self.redis_url, self.end)
        copy.configure(copy.redis_url)
        return copy

    def configure(self, redis_url: str, **sections: str) -> None:
        """Point featurestore.yaml at ``redis_url``; ``sections`` add YAML lines (key: value)."""
        lines = [
            "project: fraud",
            "registry: data/registry.json",
            "offline_store: {type: duckdb}",
            f"online_store: {{type: redis, url: '{redis_url}', socket_timeout: 2}}",
            "feature_log: {path: data/feature_log}",
        ]
        for key, value in sections.items():
            lines = [line for line in lines if not line.startswith(f"{key}:")] + [f"{key}: {value}"]
        (self.repo / "featurestore.yaml").write_text("\n".join(lines) + "\n")

    def materialize(self) -> None:
        from featurestore import FeatureStore

        store = FeatureStore(self.repo)
        store.materialize(datetime(2000, 1, 1, tzinfo=UTC), self.end)

    def pairs(self, n: int, seed: int = 0) -> dict[str, list[int]]:
        """``n`` (user, merchant) pairs of recent transactions, as entity columns."""
        import pandas as pd

        tx = pd.read_parquet(self.repo / "data" / "transactions.parquet")
        recent = tx.sort_values("event_timestamp").tail(max(n * 4, 200))
        chosen = recent.sample(n, random_state=seed)
        return {
            "user_id": [int(v) for v in chosen["user_id"]],
            "merchant_id": [int(v) for v in chosen["merchant_id"]],
        }


def build_example(root: Path, redis_url: str) -> ExampleRepo:
    """Generate (small, ending now), apply, train a tiny model, materialize: a few seconds."""
    from featurestore import FeatureStore, models

    repo = root / "repo"
    repo.mkdir(parents=True)
    for file in [*EXAMPLE.glob("*.py"), EXAMPLE / "featurestore.yaml"]:
        shutil.copy(file, repo)
    subprocess.run(
        [sys.executable, str(repo / "generate.py"), "--scale", "0.05", "--out", str(repo / "data")],
        check=True,
        capture_output=True,
    )
    example = ExampleRepo(repo, root / "model", redis_url)
    example.configure(redis_url)
    FeatureStore(repo).apply()
    models.train(
        repo,
        service="fraud_v1",
        entities=repo / "data" / "transactions.parquet",
        label="is_fraud",
        out=example.model,
        num_boost_round=8,
        threads=1,
        progress=False,
    )
    example.materialize()
    return example


def wait_for_log(repo: Path, request_id: str, rows: int) -> Any:
    """The feature log's rows of ``request_id`` (a ``pa.Table``; the writer flushes about
    every second)."""
    import pyarrow.compute as pc

    from featurestore.feature_log import read_log

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        log = read_log(repo / "data" / "feature_log")
        if log.num_rows:
            found = log.filter(pc.equal(log["request_id"], request_id))
            if found.num_rows == rows:
                return found
        time.sleep(0.1)
    raise AssertionError(f"the feature log has no {rows} rows of {request_id}")
