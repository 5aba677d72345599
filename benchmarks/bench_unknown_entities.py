"""Scoring requests for entities the store has never seen, beside known ones: what the served
model's watermark re-check costs (``OnlineModel.score_async``, the code ``/predict`` runs).

    .venv/bin/python benchmarks/bench_unknown_entities.py [--calls 3000] [--repeat 3]

The small repo and model of tests/models/model_repo.py (a 40-tree model over two plain
views), materialized into a throwaway redis-server; then ``--calls`` scoring calls for one
known user and for one unknown user (every view NOT_FOUND, so each call re-checks the
watermarks), one at a time and 16 at once on one event loop. Prints CPU and wall time per
call (medians of ``--repeat``). The machine is shared: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "models"))
from model_repo import START, labeled_entities, write_repo
from redis_server import RedisServer
from rich.console import Console
from rich.table import Table

from featurestore import FeatureStore, models
from featurestore.models.online import OnlineModel

KNOWN = {"user_id": [1]}
UNKNOWN = {"user_id": [10_000_001]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = RedisServer()
    with tempfile.TemporaryDirectory() as tmp:
        repo = write_repo(Path(tmp) / "repo")
        config = repo / "featurestore.yaml"
        config.write_text(
            config.read_text().replace(
                "online_store: {type: sqlite, path: data/online.db}",
                f"online_store: {server.online_store}",
            )
        )
        store = FeatureStore(repo)
        store.apply()
        entities = repo / "labeled.parquet"
        labeled_entities(repo).to_parquet(entities, index=False)
        models.train(repo, service="svc", entities=entities, label="is_fraud",
                     out=Path(tmp) / "model", num_boost_round=40, threads=1, progress=False)  # fmt: skip
        store.materialize(START - timedelta(days=5), START + timedelta(days=10))
        model = OnlineModel(models.load(Path(tmp) / "model"), store._online_reader())

        async def run(body: dict[str, list[int]], concurrent: int) -> tuple[float, float]:
            async def one() -> None:
                for _ in range(args.calls // concurrent):
                    await model.score_async(body)

            for _ in range(50):
                await model.score_async(body)
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one() for _ in range(concurrent)))
            n = args.calls // concurrent * concurrent
            return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6

        table = Table("entity", "at once", "CPU per call", "wall per call",
                      title=f"OnlineModel.score_async, {args.calls:,} calls, medians of {args.repeat}")  # fmt: skip
        for label, body in (("known", KNOWN), ("unknown", UNKNOWN)):
            for concurrent in (1, 16):
                runs = [asyncio.run(run(body, concurrent)) for _ in range(args.repeat)]
                cpu = statistics.median(r[0] for r in runs)
                wall = statistics.median(r[1] for r in runs)
                table.add_row(label, str(concurrent), f"{cpu:,.0f} µs", f"{wall:,.0f} µs")
        Console().print(table)
        print("load average", " ".join(Path("/proc/loadavg").read_text().split()[:3]))
        store.close()
    server.stop()


if __name__ == "__main__":
    main()
