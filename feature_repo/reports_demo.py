"""``make demo``'s reports part: clean reports, then two injected problems and the reports
catching them.

    python feature_repo/reports_demo.py [--repo feature_repo] [--model artifacts/fraud_v2]

1. Serves 2,000 transactions drawn (seeded) from the 5,000 most recent (user, merchant and the request field
   ``amount``, which fraud_v2's request-time feature ``txn_features:amount_vs_avg_24h``
   reads) through ``/predict`` (the repo's own online store, materialized up to now by
   serve_demo.py), then runs ``featurestore consistency-report`` (every value equals its
   replay, the transformed feature's included: exit 0; the script checks that it was
   compared) and ``featurestore skew-report`` against a training set of those 5,000
   transactions at the serving time (exit 0): the served rows are a sample of the
   reference's, so at any ``--scale`` they differ only by sampling (the 2,000 most recent
   were other users than the 5,000 at ``--scale 0.1``, and their null rates differed).
2. Stale online store: a copy of the repo whose online store is materialized only up to 3
   hours before the data's end serves the same transactions; the consistency report finds
   stale-online values (exit 3), the transformed feature's classed by its stale inputs, and
   the script checks their lag against the source data.
3. Shifted feature: a copy whose ``merchant_stats.avg_amount_30d`` is 1.8 times larger in
   the source (an upstream unit change) serves them; the skew report flags that feature and
   no other (exit 3).

Reports are written to ``<repo>/data/reports/*.html`` (open them in a browser) and ``.json``.
Each step checks its outcome and exits non-zero when a report does not say what it must.
This file lives in the feature repo, so loading the repo imports it: importing it only
defines names.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SERVED = 2_000
REFERENCE = 5_000
STALE_HOURS = 3
SHIFT = 1.8
SHIFTED = "merchant_stats:avg_amount_30d"
REQUEST = ("user_id", "merchant_id", "amount")  # the keys, and the request field fraud_v2 reads
TRANSFORMED = "txn_features:amount_vs_avg_24h"


def _say(text: str) -> None:
    print(f"\n\033[1m{text}\033[0m", flush=True)


def _cli(*args: str, expect: int | tuple[int, ...]) -> None:
    """Run a featurestore command as a user would (its output shown); check its exit status."""
    print("$ featurestore " + " ".join(args), flush=True)
    code = subprocess.call([sys.executable, "-m", "featurestore.cli", *args])
    if code not in (expect if isinstance(expect, tuple) else (expect,)):
        sys.exit(f"featurestore {args[0]} exited with {code}, expected {expect}")


def _serve(repo: Path, model: Path, pairs: Any) -> datetime:
    """Start the service, score ``pairs`` (keys and the amount) in requests of 100, stop it
    (the log is written); the time the first request was sent."""
    import httpx
    from serve_demo import _wait, free_port

    port = free_port()
    command = [sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(repo)]
    command += ["--model", str(model), "--port", str(port)]
    server = subprocess.Popen(
        command, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stderr=subprocess.DEVNULL
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        _wait(client, server)
        started = datetime.now(UTC)
        for start in range(0, len(pairs), 100):
            chunk = pairs.iloc[start : start + 100]
            entities = {k: [int(v) for v in chunk[k]] for k in ("user_id", "merchant_id")}
            entities["amount"] = [float(v) for v in chunk["amount"]]
            client.post("/predict", json={"entities": entities}).raise_for_status()
    finally:
        client.close()
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    print(f"served {len(pairs):,} entity rows in {len(pairs) // 100} /predict requests")
    return started


def _copy(repo: Path, where: Path) -> Path:
    """The repo's definitions and sources in ``where``, with an empty online store and log."""
    copy = where / "repo"
    shutil.copytree(
        repo,
        copy,
        ignore=shutil.ignore_patterns("online*.db*", "feature_log", "reports", "train_*"),
    )
    (copy / "featurestore.yaml").write_text(
        "project: fraud\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
        "online_store: {type: sqlite, path: data/online.db}\n"
        "feature_log: {path: data/feature_log}\n"
    )
    return copy


def main() -> None:
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from featurestore import FeatureStore, models

    here = Path(__file__).parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=here)
    parser.add_argument("--model", type=Path, default=here.parent / "artifacts" / "fraud_v2")
    args = parser.parse_args()
    repo, model = args.repo.resolve(), args.model.resolve()
    out = repo / "data" / "reports"
    out.mkdir(parents=True, exist_ok=True)
    tx = pd.read_parquet(repo / "data" / "transactions.parquet").sort_values("event_timestamp")
    recent = tx.tail(REFERENCE)[list(REQUEST)].reset_index(drop=True)
    pairs = recent.sample(min(SERVED, len(recent)), random_state=7).reset_index(drop=True)
    service = models.load(model).metadata.feature_service

    _say("1. Clean: serve recent traffic, then the reports find nothing")
    since = _serve(repo, model, pairs).isoformat()
    clean_json = out / "consistency.json"
    _cli("consistency-report", "--repo", str(repo), "--model", str(model), "--since", since,
         "--out", str(out / "consistency.html"), "--out", str(clean_json), expect=0)  # fmt: skip
    _check_transformed(json.loads(clean_json.read_text()), service)
    reference = repo / "data" / "train_recent.parquet"
    # The reference is built at the time the pairs were served: user_activity's windows end
    # at each row's own time, so a training set of the transactions at their own times would
    # not count each transaction in its own windows, which a read minutes later does (a
    # real skew between scoring at the event and scoring later, not this step's point).
    FeatureStore(repo).get_historical_features(
        recent.assign(event_timestamp=since), feature_service=service, as_of="created"
    ).to_parquet(reference)
    print(
        f"built {reference.name}: {service} for the {REFERENCE:,} most recent transactions "
        "(keys and amount) at the serving time (as_of=created)"
    )
    # Warnings are possible here (exit 4), never an alert: the merchant and profile snapshots
    # are daily, and in the hours after midnight part of the reference predates today's.
    _cli("skew-report", "--repo", str(repo), "--training-set", str(reference), "--since", since,
         "--out", str(out / "skew.html"), expect=(0, 4))  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="reports-demo-") as tmp:
        copy = _copy(repo, Path(tmp))
        transactions = pq.read_table(copy / "data" / "transactions.parquet")
        end = pc.max(transactions["event_timestamp"]).as_py()
        cut = end - timedelta(hours=STALE_HOURS)
        _say(f"2. Stale: the online store materialized only up to {cut:%H:%M} UTC "
             f"({STALE_HOURS} hours before the data's end)")  # fmt: skip
        store = FeatureStore(copy)
        store.materialize(datetime(1970, 1, 1, tzinfo=UTC), cut)
        _serve(copy, model, pairs)
        stale_json = out / "consistency_stale.json"
        _cli("consistency-report", "--repo", str(copy), "--model", str(model),
             "--out", str(out / "consistency_stale.html"), "--out", str(stale_json), expect=3)  # fmt: skip
        _check_stale(store, model, cut, json.loads(stale_json.read_text()))

        _say(f"3. Shifted: {SHIFTED} is {SHIFT}x larger upstream (a unit change)")
        source = copy / "data" / "merchant_stats.parquet"
        table = pq.read_table(source)
        column = table.schema.get_field_index("avg_amount_30d")
        table = table.set_column(column, "avg_amount_30d", pc.multiply(table[column], SHIFT))
        pq.write_table(table, source)
        (copy / "data" / "online.db").unlink()
        shutil.rmtree(copy / "data" / "feature_log")
        store = FeatureStore(copy)
        store.materialize(datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC))
        _serve(copy, model, pairs)
        skew_json = out / "skew_shifted.json"
        _cli("skew-report", "--repo", str(copy), "--training-set", str(reference),
             "--out", str(out / "skew_shifted.html"), "--out", str(skew_json), expect=3)  # fmt: skip
        flagged = [f["feature"] for f in json.loads(skew_json.read_text())["features"]
                   if f["level"] != "ok"]  # fmt: skip
        if flagged != [SHIFTED]:
            sys.exit(f"the skew report flagged {flagged}, not exactly [{SHIFTED!r}]")
        print(f"flagged {SHIFTED} and no other feature, as injected")
    print(f"\nReports: {', '.join(sorted(p.name for p in out.glob('*.html')))} in {out}")


def _check_transformed(report: dict[str, Any], service: str) -> None:
    """A service with a request-time feature has it compared (by value, on every row)."""
    if service != "fraud_v2":
        return
    found = [f for f in report["features"] if f["feature"] == TRANSFORMED]
    if not found or found[0]["kind"] != "transformed" or found[0]["compared"] == 0:
        sys.exit(f"{TRANSFORMED} was not compared: {report['notes']}")
    feature = found[0]
    print(
        f"{TRANSFORMED} (computed at request time) compared on {feature['compared']:,} rows: "
        f"{feature['matched']:,} equal to the replay's transformation of the replayed inputs"
    )


def _check_stale(store: Any, model: Path, cut: datetime, report: dict[str, Any]) -> None:
    """Every mismatch is stale-online, and the reported lag is the one the data gives:
    per stale row, the replay's winner minus the last event materialized (<= the cut); for
    an aggregated feature, the request time minus the view's covered end (the cut)."""
    import numpy as np

    from featurestore.reports import consistency_report

    if set(report["classes"]) - {"stale-online"} and any(
        n for c, n in report["classes"].items() if c != "stale-online"
    ):
        sys.exit(f"classes other than stale-online: {report['classes']}")
    full = consistency_report(store, model=model, examples=10**9)
    for feature in full.features:
        for summary in feature.classes:
            lags = []
            for row in summary.examples:
                served = datetime.fromisoformat(row["served"]["event_ts"])
                # an aggregated feature's offline side is the window ending at the request
                # time (its served event time is the covered end): classed by that time
                offline = datetime.fromisoformat(row["offline"]["event_ts"] or row["request_ts"])
                if not served <= cut < offline:
                    sys.exit(f"{feature.ref}: served {served} / offline {offline} vs cut {cut}")
                lags.append((offline - served).total_seconds())
            median, p95 = float(np.median(lags)), float(np.quantile(lags, 0.95))
            if (median, p95) != (summary.lag_median_s, summary.lag_p95_s):
                sys.exit(f"{feature.ref}: lag {summary.lag_median_s} != {median} from the data")
    stale = [(f.ref, c) for f in full.features for c in f.classes]
    newest = max(c.served_up_to for _, c in stale if c.served_up_to)
    if newest > cut:
        sys.exit(f"online served an event of {newest}, after the materialized end {cut}")
    transformed = [(f, c) for f in full.features if f.ref == TRANSFORMED for c in f.classes]
    if transformed:  # classed by its inputs: the first input stale on each row says so
        feature, summary = transformed[0]
        inputs = sorted({e["classed_by"] for e in summary.examples})
        print(
            f"{TRANSFORMED} (computed at request time): {summary.count:,} of "
            f"{feature.compared:,} values differ from the replay, each stale-online through "
            f"its stale input ({', '.join(inputs)}), lag median "
            f"{(summary.lag_median_s or 0) / 60:.0f} min"
        )
    ref, worst = max(stale, key=lambda fc: fc[1].count)
    print(
        f"stale-online in {len(stale)} features ({sum(c.count for _, c in stale):,} values), "
        f"every served row from before {cut:%H:%M} (the newest: {newest:%H:%M}) where the "
        f"replay has a later one; {ref}: lag median {(worst.lag_median_s or 0) / 60:.0f} min, "
        f"p95 {(worst.lag_p95_s or 0) / 60:.0f} min (offline winner minus served event time), "
        "equal to the source data's"
    )


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"(reports demo: {time.perf_counter() - t0:.0f} s)")
