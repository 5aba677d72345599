"""The reports at scale: a consistency replay of 1M logged rows, and the skew report over 1M
served vectors against a 1M-row training set (the issue's bound: each under 60 s and 2 GB).

The data is bench_historical.py's (Feast's quickstart shape, ``--features`` source rows, 6
features over 2 views); ``--rows`` entity rows stand for served requests. Built once, before
any clock starts:

* the feature log: one row per entity row, ``request_ts`` = its time, each feature's value,
  status and winner's event and created times taken from the offline join at that time (what
  a correct online store serves); then 1% of the rows made stale (an older value and event
  time), so the replay has mismatches to class. Written as the service writes it (Hive
  ``date=`` folders, the log schema's columns);
* the training set: the same entity rows joined (``RetrievalJob.to_parquet``, manifest beside).

Then each measurement runs in its own process (peak RSS is ``ru_maxrss`` of that process,
imports included), ``--repeat`` times, interleaved:

* ``training-set join``: ``get_historical_features(..., with_timestamps=True).to_arrow()`` of
  the 1M rows: the replay's own join, for the ratio;
* ``consistency replay``: ``reports.consistency_report`` (read the log, the join, compare,
  class, summarize);
* ``skew``: ``reports.skew_report`` (read both, 6 features' statistics).

    .venv/bin/python benchmarks/bench_reports.py                       # 10M x 1M, 3 repeats
    .venv/bin/python benchmarks/bench_reports.py --features 1M --rows 100k --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_historical import FEATURES, generate, human, parse_count, prepare_ours, run_child

STALE_SHARE = 0.01
LIMIT_SECONDS, LIMIT_BYTES = 60.0, 2 * 2**30


def build_log_and_training_set(repo: Path, folder: Path) -> Path:
    """Write the feature log under the repo and the training set (skipped when present)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from featurestore import FeatureStore

    train = folder / "train.parquet"
    log_path = repo / "data" / "feature_log"
    if train.exists() and log_path.exists():
        return train
    store = FeatureStore(repo)
    entities = pq.read_table(folder / "entities.parquet").select(["driver_id", "event_timestamp"])
    job = store.get_historical_features(entities, FEATURES, full_feature_names=True)
    job.to_parquet(train)
    joined = store.get_historical_features(
        entities, FEATURES, full_feature_names=True, with_timestamps=True
    ).to_arrow()
    rng = np.random.default_rng(11)
    n = joined.num_rows
    stale = pa.array(rng.random(n) < STALE_SHARE)
    utc = pa.timestamp("us", tz="UTC")
    columns = {
        "request_id": pa.array([f"r{i}" for i in range(n)]),
        "request_ts": joined["event_timestamp"],
        "endpoint": pa.array(["/get-online-features"] * n),
        **{c: pa.nulls(n, pa.string()) for c in ("model", "model_fingerprint", "model_sha256")},
        "service": pa.nulls(n, pa.string()),
        "driver_id": joined["driver_id"],
    }
    for ref in FEATURES:
        view, feature = ref.split(":")
        column = f"{view}__{feature}"
        event = joined[f"{view}__event_ts"]
        winner = pc.is_valid(event)
        value = joined[column]
        older = pc.subtract(event, pa.scalar(3_600_000_000, pa.duration("us")))
        other = pc.if_else(pc.is_valid(value), value, value)  # same type, for if_else below
        if pa.types.is_floating(value.type) or pa.types.is_integer(value.type):
            other = pc.add(value, pa.scalar(1, value.type))
        make_stale = pc.and_(stale, winner)
        status = pc.if_else(
            winner, pc.if_else(pc.is_valid(value), "PRESENT", "NULL_VALUE"), "NOT_FOUND"
        )
        columns[column] = pc.if_else(make_stale, other, value)
        columns[f"{column}__status"] = status
        columns[f"{column}__event_ts"] = pc.if_else(make_stale, older, event).cast(utc)
        columns[f"{column}__created_ts"] = joined[f"{view}__created_ts"]
    columns["prediction"] = pa.nulls(n, pa.float64())
    table = pa.table(columns).replace_schema_metadata({b"featurestore.feature_log.version": b"1"})
    days = pc.strftime(table["request_ts"], format="%Y-%m-%d")
    for day in sorted(days.unique().to_pylist()):
        part = log_path / f"date={day}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pc.equal(days, day)), part / "part-bench.parquet")
    return train


def child(kind: str, repo: str, train: str) -> None:
    """In a fresh process: one measurement, one JSON line."""
    started, cpu = time.perf_counter(), time.process_time()
    if kind == "join":
        import pyarrow.parquet as pq

        from featurestore import FeatureStore

        entities = pq.read_table(Path(train).parent / "entities.parquet")
        entities = entities.select(["driver_id", "event_timestamp"])
        started, cpu = time.perf_counter(), time.process_time()
        table = (
            FeatureStore(repo)
            .get_historical_features(
                entities, FEATURES, full_feature_names=True, with_timestamps=True
            )
            .to_arrow()
        )
        detail = f"{table.num_rows:,} rows"
    elif kind == "consistency":
        from featurestore import FeatureStore
        from featurestore.reports import consistency_report

        report = consistency_report(FeatureStore(repo))
        counts = report.class_counts()
        detail = f"score {report.score:.4f}, stale-online {counts['stale-online']:,}"
    else:
        from featurestore.config import load_config
        from featurestore.reports import skew_report

        skew = skew_report(load_config(repo), train)
        detail = f"{skew.served_rows:,} served vs {skew.reference_rows:,}, max PSI " + (
            f"{max(f.psi for f in skew.features):.4f}"
        )
    print(
        json.dumps(
            {
                "ok": True,
                "seconds": time.perf_counter() - started,
                "cpu": time.process_time() - cpu,
                "detail": detail,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=parse_count, default=parse_count("10M"))
    parser.add_argument("--rows", type=parse_count, default=parse_count("1M"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("/tmp/featurestore-bench-reports"))
    parser.add_argument("--child", nargs=3, metavar=("KIND", "REPO", "TRAIN"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    folder = args.data / f"{human(args.features)}x{human(args.rows)}"
    print(f"data in {folder} (built once)", flush=True)
    generate(folder, args.features, args.rows)
    repo = prepare_ours(folder)
    (repo / "featurestore.yaml").write_text(
        "project: bench\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
        "feature_log: {path: data/feature_log}\n"
    )
    train = build_log_and_training_set(repo, folder)
    kinds = {"join": "training-set join", "consistency": "consistency replay", "skew": "skew"}
    results: dict[str, list[tuple[dict, int]]] = {k: [] for k in kinds}
    loads = []
    for _ in range(args.repeat):
        for kind in kinds:
            loads.append(os.getloadavg()[0])
            answer, peak = run_child(
                [sys.executable, __file__, "--child", kind, str(repo), str(train)]
            )
            if not answer.get("ok"):
                print(f"{kind} failed: {answer}", file=sys.stderr)
                return 1
            results[kind].append((answer, peak))
            print(
                f"  {kinds[kind]}: {answer['seconds']:.2f} s, {peak / 2**30:.2f} GB ({answer['detail']})",
                flush=True,
            )
    size = f"{human(args.features)} x {human(args.rows)}"
    print(
        f"\n| what ({size}: source rows x logged rows) | median wall | median CPU | peak RSS | vs the join | result |"
    )
    print("|---|---|---|---|---|---|")
    join = statistics.median(a["seconds"] for a, _ in results["join"])
    failed = False
    for kind, label in kinds.items():
        wall = statistics.median(a["seconds"] for a, _ in results[kind])
        cpu = statistics.median(a["cpu"] for a, _ in results[kind])
        peak = max(p for _, p in results[kind])
        ratio = "" if kind == "join" else f"{wall / join:.1f}x"
        print(
            f"| {label} | {wall:.2f} s | {cpu:.2f} s | {peak / 2**30:.2f} GB | {ratio} | {results[kind][-1][0]['detail']} |"
        )
        if kind != "join" and (wall > LIMIT_SECONDS or peak > LIMIT_BYTES):
            failed = True
    print(f"\nload average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}")
    if failed:
        print("a report exceeded 60 s or 2 GB", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
