"""The reports at scale: a consistency replay of 1M logged rows, and the skew report over 1M
served vectors against a 1M-row training set (the issue's bound: each under 60 s and 2 GB).

The data is bench_historical.py's (Feast's quickstart shape, ``--features`` source rows, 6
features over 2 views); ``--rows`` entity rows stand for served requests. The repo adds one
request-time transformation, Feast's quickstart ``transformed_conv_rate`` on one output:
``conv_rate_plus_val = driver_hourly_stats:conv_rate + val_to_add`` (pandas mode; ``val_to_add``
an Int64 request field, drawn per row in [0, 1000)). Built once, before any clock starts:

* the feature log: one row per entity row, ``request_ts`` = its time, the request field, each
  of the 6 features' value, status and winner's event and created times taken from the offline
  join at that time (what a correct online store serves); then 1% of the rows made stale (an
  older value, +1, and an event time 1 h older; a string keeps its value, so ``city``'s stale
  rows match by value and are not mismatches). The transformed feature is then computed as
  serving computes it (``transforms.transform`` on the served, stale included, input and the
  request field; PRESENT or NULL_VALUE, no times): a stale input makes its output differ.
  Written as the service writes it (Hive ``date=`` folders, the log schema's columns), with
  ``injected.json`` beside it: per feature column, the injected stale rows whose value differs;
* the training set: the same entity rows and request field joined, the transformed feature
  included (``RetrievalJob.to_parquet``, manifest beside).

Then each measurement runs in its own process (peak RSS is ``ru_maxrss`` of that process,
imports included), ``--repeat`` times, interleaved:

* ``training-set join``: ``get_historical_features(..., with_timestamps=True).to_arrow()`` of
  the 1M rows and the 6 plain features (as before the transformation was added): the join
  alone, for the ratio;
* ``consistency replay``: ``reports.consistency_report`` (read the log, the join with the
  transformation, compare, class, summarize). It is checked: every feature's mismatches are
  exactly its injected stale rows, all classed stale-online with a lag of 1 h (the transformed
  feature's through its input); the run fails otherwise;
* ``skew``: ``reports.skew_report`` (read both, 7 features' statistics).

Before the transformation was added (commit 732ed9c), the log and the training set held the
6 plain features only and the replay and skew processed those; the join is unchanged, and the
stale rows are the same rows (same seed, drawn first).

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
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).parent))
from bench_historical import FEATURES, REPO_DEFINITIONS, generate, human, parse_count, run_child

if TYPE_CHECKING:
    from featurestore.reports import ConsistencyReport

STALE_SHARE = 0.01
STALE_LAG_S = 3_600
LIMIT_SECONDS, LIMIT_BYTES = 60.0, 2 * 2**30
REQUEST_FIELD = "val_to_add"
TRANSFORMED = "transformed_conv_rate:conv_rate_plus_val"
TRANSFORMATION = """
import pandas as pd

from featurestore import RequestSource, on_demand_feature_view

vals_to_add = RequestSource(name="vals_to_add", schema=[Field(name="val_to_add", dtype=Int64)])


@on_demand_feature_view(
    sources=[driver_hourly_stats[["conv_rate"]], vals_to_add],
    schema=[Field(name="conv_rate_plus_val", dtype=Float64)],
)
def transformed_conv_rate(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=inputs.index)
    out["conv_rate_plus_val"] = inputs["conv_rate"] + inputs["val_to_add"]
    return out
"""


def prepare_repo(folder: Path) -> Path:
    """bench_historical's repo and the transformation, with a feature log, applied."""
    from featurestore import FeatureStore

    repo = folder / "ours"
    repo.mkdir(exist_ok=True)
    (repo / "featurestore.yaml").write_text(
        "project: bench\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
        "feature_log: {path: data/feature_log}\n"
    )
    definitions = REPO_DEFINITIONS.format(
        hourly=folder / "hourly.parquet", daily=folder / "daily.parquet"
    )
    (repo / "features.py").write_text(definitions + TRANSFORMATION)
    FeatureStore(repo).apply()
    return repo


def build_log_and_training_set(repo: Path, folder: Path) -> Path:
    """Write the feature log under the repo, ``injected.json`` and the training set
    (skipped when all three are there)."""
    import shutil

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from featurestore import FeatureStore
    from featurestore.transforms import split_request, transform

    train, injected = folder / "train.parquet", folder / "injected.json"
    log_path = repo / "data" / "feature_log"
    if train.exists() and log_path.exists() and injected.exists():
        return train
    shutil.rmtree(log_path, ignore_errors=True)
    store = FeatureStore(repo)
    entities = pq.read_table(folder / "entities.parquet").select(["driver_id", "event_timestamp"])
    n = entities.num_rows
    rng = np.random.default_rng(11)
    stale = pa.array(rng.random(n) < STALE_SHARE)  # drawn first: the same rows as before
    request = pa.array(rng.integers(0, 1_000, n), pa.int64())
    entities = entities.append_column(REQUEST_FIELD, request)
    job = store.get_historical_features(entities, [*FEATURES, TRANSFORMED], full_feature_names=True)
    job.to_parquet(train)
    joined = store.get_historical_features(
        entities, FEATURES, full_feature_names=True, with_timestamps=True
    ).to_arrow()
    utc = pa.timestamp("us", tz="UTC")
    columns = {
        "request_id": pa.array([f"r{i}" for i in range(n)]),
        "request_ts": joined["event_timestamp"],
        "endpoint": pa.array(["/get-online-features"] * n),
        **{c: pa.nulls(n, pa.string()) for c in ("model", "model_fingerprint", "model_sha256")},
        "service": pa.nulls(n, pa.string()),
        "driver_id": joined["driver_id"],
        REQUEST_FIELD: request,
    }
    differs: dict[str, int] = {}  # per feature column: injected stale rows whose value differs
    made_stale: dict[str, pa.ChunkedArray] = {}
    for ref in FEATURES:
        view, feature = ref.split(":")
        column = f"{view}__{feature}"
        event = joined[f"{view}__event_ts"]
        winner = pc.is_valid(event)
        value = joined[column]
        older = pc.subtract(event, pa.scalar(STALE_LAG_S * 1_000_000, pa.duration("us")))
        other = pc.if_else(pc.is_valid(value), value, value)  # same type, for if_else below
        if pa.types.is_floating(value.type) or pa.types.is_integer(value.type):
            other = pc.add(value, pa.scalar(1, value.type))
        make_stale = made_stale[view] = pc.and_(stale, winner)
        status = pc.if_else(
            winner, pc.if_else(pc.is_valid(value), "PRESENT", "NULL_VALUE"), "NOT_FOUND"
        )
        columns[column] = pc.if_else(make_stale, other, value)
        columns[f"{column}__status"] = status
        columns[f"{column}__event_ts"] = pc.if_else(make_stale, older, event).cast(utc)
        columns[f"{column}__created_ts"] = joined[f"{view}__created_ts"]
        differs[column] = pc.sum(pc.and_(make_stale, pc.not_equal(other, value))).as_py() or 0
    # the transformed feature as serving computes it: from the values served (stale ones
    # included) and the request field, by the one function both paths call
    state = store.state
    projections, _ = state.resolve([*FEATURES, TRANSFORMED])
    steps = split_request(state, projections, True, repo).transformations
    view, feature = TRANSFORMED.split(":")
    column = f"{view}__{feature}"
    computed = transform(steps, columns, n)[column]
    columns[column] = computed
    columns[f"{column}__status"] = pc.if_else(pc.is_valid(computed), "PRESENT", "NULL_VALUE")
    columns[f"{column}__event_ts"] = pa.nulls(n, utc)
    columns[f"{column}__created_ts"] = pa.nulls(n, utc)
    differs[column] = pc.sum(made_stale["driver_hourly_stats"]).as_py() or 0  # its input's
    columns["prediction"] = pa.nulls(n, pa.float64())
    table = pa.table(columns).replace_schema_metadata({b"featurestore.feature_log.version": b"1"})
    days = pc.strftime(table["request_ts"], format="%Y-%m-%d")
    for day in sorted(days.unique().to_pylist()):
        part = log_path / f"date={day}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pc.equal(days, day)), part / "part-bench.parquet")
    injected.write_text(json.dumps(differs, indent=1))
    return train


def check_consistency(report: ConsistencyReport, injected: dict[str, int]) -> list[str]:
    """What the report got wrong: each feature's mismatches must be exactly its injected
    stale rows, classed stale-online with a lag of ``STALE_LAG_S``."""
    from featurestore.reports.classes import STALE_ONLINE

    wrong = []
    found = {f.column: f for f in report.features}
    if set(found) != set(injected):
        wrong.append(f"features compared {sorted(found)}, logged {sorted(injected)}")
    for column, expected in injected.items():
        f = found.get(column)
        if f is None:
            continue
        stale = f.class_count(STALE_ONLINE)
        mismatches = f.compared - f.matched
        if stale != expected or mismatches != expected:
            wrong.append(
                f"{column}: {expected:,} stale rows injected, the report found {stale:,} "
                f"stale-online among {mismatches:,} mismatches"
            )
        lags = [(c.lag_median_s, c.lag_p95_s) for c in f.classes if c.name == STALE_ONLINE]
        if lags and lags[0] != (STALE_LAG_S, STALE_LAG_S):
            wrong.append(f"{column}: stale-online lag (median, p95) {lags[0]}, not {STALE_LAG_S} s")
    return wrong


def child(kind: str, repo: str, train: str) -> None:
    """In a fresh process: one measurement, one JSON line (``wrong``: what the consistency
    report got wrong, checked after the clock stops)."""
    started, cpu = time.perf_counter(), time.process_time()
    wrong: list[str] = []
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
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        detail = f"{table.num_rows:,} rows"
    elif kind == "consistency":
        from featurestore import FeatureStore
        from featurestore.reports import consistency_report

        report = consistency_report(FeatureStore(repo))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        injected = json.loads((Path(train).parent / "injected.json").read_text())
        wrong = check_consistency(report, injected)
        transformed = next((f for f in report.features if f.ref == TRANSFORMED), None)
        detail = (
            f"score {report.score:.4f}, stale-online {report.class_counts()['stale-online']:,} "
            f"of which transformed "
            f"{transformed.class_count('stale-online') if transformed else 0:,}, "
            + ("as injected" if not wrong else "NOT as injected")
        )
    else:
        from featurestore.config import load_config
        from featurestore.reports import skew_report

        skew = skew_report(load_config(repo), train)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        detail = (
            f"{skew.served_rows:,} served vs {skew.reference_rows:,}, {len(skew.features)} "
            f"features, max PSI {max(f.psi for f in skew.features):.4f}"
        )
    answer = {"ok": True, "seconds": seconds, "cpu": cpu, "detail": detail, "wrong": wrong}
    print(json.dumps(answer))


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
    repo = prepare_repo(folder)
    train = build_log_and_training_set(repo, folder)
    kinds = {"join": "training-set join", "consistency": "consistency replay", "skew": "skew"}
    results: dict[str, list[tuple[dict, int]]] = {k: [] for k in kinds}
    loads = []
    failed = False
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
            for problem in answer["wrong"]:
                print(f"  wrong: {problem}", file=sys.stderr)
            failed = failed or bool(answer["wrong"])
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
        print("a report exceeded 60 s or 2 GB, or got the injected rows wrong", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
