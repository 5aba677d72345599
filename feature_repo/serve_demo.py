"""``make demo``'s serving part: start ``featurestore serve``, ask it over HTTP, stop it.

    python feature_repo/serve_demo.py [--repo feature_repo] [--model artifacts/fraud_v2]

Materializes everything up to now into the repo's configured online store (the SQLite file
unless featurestore.yaml says Redis), starts the prediction service on 127.0.0.1 and a free
port, scores a few recent transactions with ``POST /predict`` (their amounts are the request
field the model's on-demand feature reads), reads one entity's features with
``POST /get-online-features``, shows ``/ready``, then stops the service with SIGTERM
(which writes the feature log) and checks it exited cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    import httpx
    import pyarrow.parquet as pq
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from featurestore import FeatureStore, models
    from featurestore.online.base import open_online_store

    here = Path(__file__).parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=here)
    parser.add_argument("--model", type=Path, default=here.parent / "artifacts" / "fraud_v2")
    args = parser.parse_args()
    console = Console()

    store = FeatureStore(args.repo)
    store.materialize(datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC))
    with open_online_store(store.config) as online:
        where = online.location
    console.print(f"[bold]Materialized[/bold] everything up to now into {where}")

    port = free_port()
    command = [sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(args.repo)]
    command += ["--model", str(args.model), "--port", str(port)]
    console.print(
        f"[bold]$[/bold] featurestore serve --repo {args.repo} --model {args.model} --port {port}"
    )
    server = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        _wait(client, server)
        transactions = pq.read_table(args.repo / "data" / "transactions.parquet").to_pandas()
        recent = transactions.sort_values("event_timestamp").tail(5)
        entities = {
            "user_id": [int(v) for v in recent["user_id"]],
            "merchant_id": [int(v) for v in recent["merchant_id"]],
            "amount": [float(v) for v in recent["amount"]],  # a request field
        }
        answer = client.post("/predict", json={"entities": entities})
        answer.raise_for_status()
        body = answer.json()
        metrics = models.load(args.model).metadata.metrics
        table = Table(
            title=f"POST /predict: model {body['model']} "
            f"(fingerprint {body['model_fingerprint'][:12]}, validation AUC {metrics['valid_auc']:.3f})",
            caption=f"request id {body['request_id']} (the feature log records it)",
            box=box.SIMPLE_HEAD,
        )
        for column in ("user_id", "merchant_id", "amount", "is_fraud (label)", "prediction"):
            table.add_column(column, justify="right")
        for (_, row), p in zip(recent.iterrows(), body["predictions"], strict=True):
            table.add_row(
                str(row["user_id"]), str(row["merchant_id"]), f"{row['amount']:.2f}",
                str(row["is_fraud"]), f"{p:.4f}",
            )  # fmt: skip
        console.print(table)

        one = {name: values[:1] for name, values in entities.items()}
        answer = client.post(
            "/get-online-features", json={"feature_service": "fraud_v2", "entities": one}
        )
        answer.raise_for_status()
        features = answer.json()
        table = Table(title="POST /get-online-features (Feast's shape)", box=box.SIMPLE_HEAD)
        for column in ("feature", "value", "status", "event time"):
            table.add_column(column)
        for name, result in zip(
            features["metadata"]["feature_names"], features["results"], strict=True
        ):
            value = result["values"][0]
            table.add_row(
                name, json.dumps(value), result["statuses"][0], result["event_timestamps"][0]
            )
        console.print(table)
        ready = client.get("/ready").json()
        console.print(f"GET /ready: ready={ready['ready']}, problems={ready['problems']}")
    finally:
        client.close()
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    if code not in (0, -signal.SIGTERM):  # uvicorn re-raises SIGTERM once it has shut down
        sys.exit(f"the service exited with status {code}")
    console.print("[bold]Stopped[/bold] the service with SIGTERM (feature log written)")


def _wait(client, server: subprocess.Popen[bytes]) -> None:  # type: ignore[no-untyped-def]
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the service exited with status {server.returncode}")
        try:
            if client.get("/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    sys.exit("the service did not start within 60 s")


if __name__ == "__main__":
    main()
