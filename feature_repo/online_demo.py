"""``make demo``'s online part: materialize the example repo, then look a few entities up.

    python feature_repo/online_demo.py [--repo feature_repo]

The demo (not the library) chooses the online store: Redis when one answers on
127.0.0.1:6379 (database 15, so it stays clear of anything else there), else the repo's
SQLite file, and says which. The library itself never falls back: a configured store that
does not answer is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEMO_REDIS_URL = "redis://127.0.0.1:6379/15"


def choose_online_store(repo: Path):  # type: ignore[no-untyped-def]
    """The repo's config, pointed at the local Redis when it answers; and a sentence why."""
    import redis

    from featurestore.config import RedisConfig, load_config

    config = load_config(repo)
    client = redis.Redis.from_url(DEMO_REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        where = getattr(config.online_store, "path", config.online_store)
        return config, f"SQLite at {where} (no Redis answered on 127.0.0.1:6379)"
    finally:
        client.close()
    config = dataclasses.replace(config, online_store=RedisConfig(url=DEMO_REDIS_URL))
    return config, f"Redis at {DEMO_REDIS_URL} (a Redis answered on 127.0.0.1:6379)"


def main() -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from featurestore import FeatureStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    console = Console()

    config, why = choose_online_store(args.repo)
    console.print(f"[bold]Online store:[/bold] {why}")
    store = FeatureStore(args.repo, config=config)
    transactions = pq.read_table(args.repo / "data" / "transactions.parquet")
    last = transactions.take(
        [pc.index(transactions["event_timestamp"], pc.max(transactions["event_timestamp"])).as_py()]
    ).to_pylist()[0]
    # Everything up to a second after the last transaction (re-running is idempotent; the
    # data may have been regenerated): user_activity's aggregates then include it, and a
    # read at that end sees every view as a training row at that time would.
    end = last["event_timestamp"] + timedelta(seconds=1)
    # The demo's own store may hold an earlier run's data, which ended at another hour: its
    # rows and tiles of events the new data no longer has would stay (no run can tell a
    # source was rewritten). Start from nothing.
    from featurestore.online.base import open_online_store

    with open_online_store(config) as online:
        for view in store.state.views:
            online.drop_view(view)
    report = store.materialize(datetime(1970, 1, 1, tzinfo=UTC), end)
    for run in report.runs:
        read = "events" if store.state.view(run.view).is_aggregated else "entity rows"
        written = "tiles" if store.state.view(run.view).is_aggregated else "rows"
        console.print(
            f"materialized {run.view}: {run.rows_read:,} {read} read, "
            f"{run.rows_written:,} {written} written in {run.seconds:.2f} s"
        )

    # Look up the last transaction's user and merchant at the materialized end, an unknown
    # pair, and the same pair four days later: every view's ttl (12 hours to 3 days) has
    # passed by then (user_activity's ttl is its staleness: 4 days since materialized).
    known = {
        "user_id": last["user_id"],
        "merchant_id": last["merchant_id"],
        "amount": last["amount"],  # the request field fraud_v2's on-demand feature reads
    }
    lookups = [
        ("at the data's end", known, end),
        ("unknown keys", {"user_id": 1, "merchant_id": 1, "amount": last["amount"]}, end),
        ("+4 days: ttl passed", known, end + timedelta(days=4)),
    ]
    table = Table(
        title="get_online_features(feature_service='fraud_v2', now=...)",
        caption=f"user {known['user_id']}, merchant {known['merchant_id']}, amount "
        f"{known['amount']:.2f}: the last transaction's; data's end {end:%Y-%m-%d %H:%M}",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("feature", no_wrap=True)
    answers = []
    for title, keys, now in lookups:
        table.add_column(title, no_wrap=True)
        answers.append(
            store.get_online_features(feature_service="fraud_v2", entity_rows=[keys], now=now)
        )
    for name in answers[0].feature_names:
        cells = []
        for answer in answers:
            value = answer.to_dict()[name][0]
            shown = "-" if value is None else f"{value:.4g}" if isinstance(value, float) else value
            cells.append(f"{shown} [dim]{answer.statuses[name][0]}[/dim]")
        table.add_row(name, *cells)
    console.print(table)
    store.close()


if __name__ == "__main__":
    main()
