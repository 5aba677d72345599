"""Generate the example fraud data: seeded, vectorized, every timestamp in UTC.

    python feature_repo/generate.py [--scale 1] [--seed 7] [--out feature_repo/data] [--end T]

writes three Parquet files covering the 60 days (and hours) up to the current hour (``--end``:
another hour; the same seed and end give the same data), so that served features are fresh
and within their ttl, as in Feast's quickstart. Rows whose created time would be after the end
(a snapshot or correction not made yet) do not exist yet and are not written:

- ``transactions.parquet``: the labeled entity rows (transaction_id, user_id, merchant_id,
  event_timestamp, amount, is_fraud), in time order; also the raw events the store
  aggregates into ``user_activity`` (features.py), so no activity is computed here.
- ``user_profile.parquet``: a daily snapshot of each account (age, credit limit, country,
  verification), created an hour or two after its snapshot time.
- ``merchant_stats.parquet``: daily merchant statistics over the 7 / 30 days before each day.
  ``fraud_rate_7d`` only counts the frauds reported by the row's created time; some rows get a
  LATE CORRECTION (same event time, later created time, the complete fraud rate).

The label carries real signal: compromised accounts (more often unverified, young or in a
risky country) produce bursts of large purchases at risky merchants within 90 minutes, and
background fraud is likelier on risky merchants, unverified or young accounts and amounts far
above the user's norm. Scale 1 is 3,000 users, 300 merchants and about 350,000 transactions
(2.2% fraud); it runs in a few seconds.

This file lives in the feature repo, so loading the repo imports it: importing it only
defines names (numpy and pyarrow are imported inside functions).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

DAYS = 60
USERS_PER_SCALE = 3_000
MERCHANTS_PER_SCALE = 300

US_PER_MINUTE = 60_000_000
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR


@dataclass(frozen=True)
class Window:
    """The data's span: ``start`` is the UTC midnight DAYS days before ``end``'s date, ``end``
    an hour (µs). Daily snapshots are at ``start + d`` days for d in 0..DAYS."""

    start_us: int
    end_us: int

    @classmethod
    def ending(cls, end: datetime) -> Window:
        end = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        midnight = end.replace(hour=0)
        end_us = int(end.timestamp()) * 1_000_000
        return cls(int(midnight.timestamp()) * 1_000_000 - DAYS * US_PER_DAY, end_us)


# name, share of merchants, amount multiplier, fraud log-odds bump
CATEGORIES = (
    ("grocery", 0.25, 0.6, -1.0),
    ("restaurants", 0.20, 0.5, -0.8),
    ("fuel", 0.12, 0.7, -0.6),
    ("fashion", 0.13, 1.2, 0.0),
    ("travel", 0.07, 3.0, 0.4),
    ("electronics", 0.09, 2.5, 0.9),
    ("gaming", 0.07, 0.8, 1.1),
    ("gift_cards", 0.07, 1.5, 1.6),
)
RISKY_CATEGORIES = ("travel", "electronics", "gaming", "gift_cards")
# name, share of users, fraud log-odds bump
COUNTRIES = (
    ("US", 0.40, 0.0),
    ("GB", 0.15, 0.0),
    ("DE", 0.12, -0.2),
    ("FR", 0.10, -0.1),
    ("BR", 0.08, 0.5),
    ("IN", 0.07, 0.4),
    ("NG", 0.04, 1.0),
    ("RO", 0.04, 0.8),
)
CREDIT_LIMITS = (500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 20_000.0)


@dataclass
class Users:
    """Per-user attributes, indexed by user position (user_id = 100_000 + position)."""

    user_id: np.ndarray
    signup_us: np.ndarray
    verified_us: np.ndarray  # int64 max: never verified
    country: np.ndarray  # index into COUNTRIES
    credit_limit: np.ndarray
    raise_day: np.ndarray  # the day the credit limit doubles (DAYS + 1: never)
    rate_per_day: np.ndarray
    log_amount: np.ndarray  # the user's typical log amount


@dataclass
class Merchants:
    """Per-merchant attributes, indexed by merchant position (merchant_id = 500_000 + pos)."""

    merchant_id: np.ndarray
    category: np.ndarray  # index into CATEGORIES
    popularity: np.ndarray  # probabilities summing to 1
    risk: np.ndarray  # fraud log-odds bump: category + merchant's own


@dataclass
class Transactions:
    """All transactions, sorted by (user position, time)."""

    user: np.ndarray
    merchant: np.ndarray
    ts_us: np.ndarray
    cents: np.ndarray
    is_fraud: np.ndarray
    reported_us: np.ndarray  # when a fraud becomes known (int64 max for legitimate ones)


def make_users(rng: np.random.Generator, n: int, w: Window) -> Users:
    """Accounts: most opened long before the window, a third during it."""
    import numpy as np

    new = rng.random(n) < 0.3
    old_signup = w.start_us - (rng.uniform(30, 1_500, n) * US_PER_DAY).astype(np.int64)
    new_signup = w.start_us + (rng.uniform(0, DAYS - 5, n) * US_PER_DAY).astype(np.int64)
    signup = np.where(new, new_signup, old_signup)
    never = rng.random(n) < 0.15
    verified = signup + (rng.exponential(5, n) * US_PER_DAY).astype(np.int64)
    verified = np.where(never, np.iinfo(np.int64).max, verified)
    raises = rng.random(n) < 0.15
    return Users(
        user_id=100_000 + np.arange(n, dtype=np.int64),
        signup_us=signup,
        verified_us=verified,
        country=rng.choice(len(COUNTRIES), n, p=[c[1] for c in COUNTRIES]),
        credit_limit=rng.choice(CREDIT_LIMITS, n, p=[0.1, 0.2, 0.3, 0.25, 0.1, 0.05]),
        raise_day=np.where(raises, rng.integers(1, DAYS, n), DAYS + 1),
        rate_per_day=np.clip(rng.lognormal(0.6, 0.6, n), 0.1, 8.0),
        log_amount=np.log(40.0) + rng.normal(0, 0.5, n),
    )


def make_merchants(rng: np.random.Generator, n: int) -> Merchants:
    """Merchants with a category, a long-tailed popularity and their own fraud risk."""
    import numpy as np

    category = rng.choice(len(CATEGORIES), n, p=[c[1] for c in CATEGORIES])
    popularity = rng.pareto(1.5, n) + 0.05
    risk = np.array([c[3] for c in CATEGORIES])[category] + rng.normal(0, 0.5, n)
    return Merchants(
        merchant_id=500_000 + np.arange(n, dtype=np.int64),
        category=category,
        popularity=popularity / popularity.sum(),
        risk=risk,
    )


def make_transactions(
    rng: np.random.Generator, users: Users, merchants: Merchants, w: Window
) -> Transactions:
    """Everyday purchases plus fraud bursts, labeled, sorted by (user, time)."""
    import numpy as np

    amount_mult = np.array([c[2] for c in CATEGORIES])
    n_users, n_merchants = len(users.user_id), len(merchants.merchant_id)

    # Everyday purchases: a Poisson number per user over the time the account is open,
    # mostly at a handful of regular merchants.
    active_from = np.maximum(users.signup_us, w.start_us)
    span = w.end_us - active_from
    counts = rng.poisson(users.rate_per_day * span / US_PER_DAY)
    user = np.repeat(np.arange(n_users), counts)
    ts = active_from[user] + (rng.random(len(user)) * span[user]).astype(np.int64)
    regulars = rng.choice(n_merchants, (n_users, 5), p=merchants.popularity)
    anywhere = rng.choice(n_merchants, len(user), p=merchants.popularity)
    merchant = np.where(
        rng.random(len(user)) < 0.6, regulars[user, rng.integers(0, 5, len(user))], anywhere
    )
    log_amount = users.log_amount[user] + rng.normal(0, 0.6, len(user))

    # Background fraud: one-off, likelier on risky merchants, unverified or young accounts,
    # risky countries and amounts far above the user's norm.
    country_risk = np.array([c[2] for c in COUNTRIES])
    unverified = users.verified_us[user] > ts
    young = (ts - users.signup_us[user]) < 30 * US_PER_DAY
    surprise = np.clip(log_amount - users.log_amount[user], 0, None)
    logit = (
        -5.6
        + merchants.risk[merchant]
        + 1.0 * unverified
        + 0.8 * young
        + country_risk[users.country[user]]
        + 1.5 * surprise
    )
    fraud = rng.random(len(user)) < 1 / (1 + np.exp(-logit))

    burst = _fraud_bursts(rng, users, merchants, country_risk, w)
    user = np.concatenate([user, burst["user"]])
    ts = np.concatenate([ts, burst["ts"]])
    merchant = np.concatenate([merchant, burst["merchant"]])
    log_amount = np.concatenate([log_amount, burst["log_amount"]])
    fraud = np.concatenate([fraud, burst["fraud"]])

    cents = np.maximum(
        np.round(np.exp(log_amount) * amount_mult[merchants.category[merchant]] * 100), 50
    ).astype(np.int64)
    # Frauds come to light (chargebacks) days later.
    delay = (rng.exponential(4, len(user)) * US_PER_DAY).astype(np.int64)
    reported = np.where(fraud, ts + delay, np.iinfo(np.int64).max)

    order = np.lexsort((ts, user))
    return Transactions(
        user=user[order],
        merchant=merchant[order],
        ts_us=ts[order],
        cents=cents[order],
        is_fraud=fraud[order],
        reported_us=reported[order],
    )


def _fraud_bursts(
    rng: np.random.Generator,
    users: Users,
    merchants: Merchants,
    country_risk: np.ndarray,
    w: Window,
) -> dict[str, np.ndarray]:
    """Compromised accounts: several large purchases at risky merchants within 90 minutes."""
    import numpy as np

    n_users = len(users.user_id)
    active_from = np.maximum(users.signup_us, w.start_us)
    never_verified = users.verified_us == np.iinfo(np.int64).max
    young = users.signup_us > w.start_us - 60 * US_PER_DAY
    logit = -1.9 + 1.2 * never_verified + 0.8 * young + country_risk[users.country]
    hit = np.flatnonzero(rng.random(n_users) < 1 / (1 + np.exp(-logit)))
    begin = active_from[hit] + (
        rng.random(len(hit)) * (w.end_us - 2 * US_PER_HOUR - active_from[hit])
    ).astype(np.int64)
    size = 2 + rng.poisson(3, len(hit))
    user = np.repeat(hit, size)
    ts = np.repeat(begin, size) + (rng.random(len(user)) * 90 * US_PER_MINUTE).astype(np.int64)
    risky_codes = [i for i, c in enumerate(CATEGORIES) if c[0] in RISKY_CATEGORIES]
    risky = np.isin(merchants.category, risky_codes)
    if not risky.any():  # a tiny scale may draw no risky merchant at all
        risky[:] = True
    weights = np.where(risky, merchants.popularity * np.exp(merchants.risk), 0.0)
    merchant = rng.choice(len(weights), len(user), p=weights / weights.sum())
    return {
        "user": user,
        "ts": ts,
        "merchant": merchant,
        "log_amount": users.log_amount[user] + 1.3 + rng.normal(0, 0.5, len(user)),
        "fraud": rng.random(len(user)) < 0.92,
    }


def merchant_stats(
    rng: np.random.Generator, tx: Transactions, merchants: Merchants, w: Window
) -> pa.Table:
    """Daily merchant statistics over the days before each day, plus late corrections.

    The row for day D (event time D 00:00) covers transactions in ``[D - 7d, D)`` (30 days for
    the average amount) and is created about two hours later. Its fraud rate counts only the
    frauds reported by then; for some rows a correction with the complete rate arrives days
    later (same event time, later created time).
    """
    import numpy as np
    import pyarrow as pa

    n_m = len(merchants.merchant_id)
    n_days = DAYS + 1  # snapshots at every midnight, the window's end included
    day = (tx.ts_us - w.start_us) // US_PER_DAY
    event = w.start_us + np.arange(n_days, dtype=np.int64) * US_PER_DAY
    created = event[None, :] + US_PER_HOUR * 2 + rng.integers(0, 30 * US_PER_MINUTE, (n_m, n_days))

    def daily(weights: np.ndarray | None) -> np.ndarray:
        grid = np.zeros((n_m, n_days + 1))
        np.add.at(grid, (tx.merchant, day + 1), 1 if weights is None else weights)
        return np.cumsum(grid, axis=1)  # column D: total over days < D

    def trailing(cum: np.ndarray, days: int) -> np.ndarray:
        start = np.maximum(np.arange(n_days) - days, 0)
        return cum[:, :n_days] - cum[:, start]

    count_cum, cents_cum = daily(None), daily(tx.cents.astype(float))
    fraud_cum = daily(tx.is_fraud.astype(float))
    n_7d, n_30d = trailing(count_cum, 7), trailing(count_cum, 30)
    cents_30d = trailing(cents_cum, 30)
    frauds_7d = trailing(fraud_cum, 7)

    known = np.zeros((n_m, n_days))
    fraud = np.flatnonzero(tx.is_fraud)
    for offset in range(1, 8):  # a fraud on day d is in the windows of days d+1 .. d+7
        target = day[fraud] + offset
        ok = target < n_days
        m, d = tx.merchant[fraud][ok], target[ok]
        np.add.at(known, (m, d), tx.reported_us[fraud][ok] <= created[m, d])

    with np.errstate(invalid="ignore", divide="ignore"):
        reported_rate = (known / n_7d).astype(np.float32)
        true_rate = (frauds_7d / n_7d).astype(np.float32)
        avg_30d = np.round(cents_30d / n_30d) / 100
    late = (known != frauds_7d) & (rng.random((n_m, n_days)) < 0.4)
    delay = rng.integers(US_PER_DAY, 6 * US_PER_DAY, (n_m, n_days))

    m_idx, d_idx = np.indices((n_m, n_days)).reshape(2, -1)
    lm, ld = np.nonzero(late)
    rows = {
        "merchant": np.concatenate([m_idx, lm]),
        "event": np.concatenate([event[d_idx], event[ld]]),
        "created": np.concatenate([created.ravel(), created[lm, ld] + delay[lm, ld]]),
        "rate": np.concatenate([reported_rate.ravel(), true_rate[lm, ld]]),
        "avg": np.concatenate([avg_30d.ravel(), avg_30d[lm, ld]]),
        "n_7d": np.concatenate([n_7d.ravel(), n_7d[lm, ld]]).astype(np.int64),
    }
    made = rows["created"] <= w.end_us  # a snapshot or correction not made yet does not exist
    order = np.lexsort((rows["created"][made], rows["merchant"][made], rows["event"][made]))
    rows = {k: v[made][order] for k, v in rows.items()}
    names = np.array([c[0] for c in CATEGORIES])
    return pa.table(
        {
            "merchant_id": pa.array(merchants.merchant_id[rows["merchant"]], pa.int64()),
            "event_ts": _timestamps(rows["event"]),
            "created_ts": _timestamps(rows["created"]),
            "category": pa.array(names[merchants.category[rows["merchant"]]], pa.string()),
            "fraud_rate_7d": pa.array(rows["rate"], pa.float32(), mask=rows["n_7d"] == 0),
            "avg_amount_30d": pa.array(rows["avg"], pa.float64(), mask=np.isnan(rows["avg"])),
            "n_tx_7d": pa.array(rows["n_7d"], pa.int64()),
        }
    )


def user_profile(rng: np.random.Generator, users: Users, w: Window) -> pa.Table:
    """A snapshot of every open account at each midnight, created 1-2 hours later."""
    import numpy as np
    import pyarrow as pa

    n_days = DAYS + 1
    snapshot = w.start_us + np.arange(n_days, dtype=np.int64) * US_PER_DAY
    u, d = np.nonzero(users.signup_us[:, None] <= snapshot[None, :])
    ts = snapshot[d]
    created = ts + US_PER_HOUR + rng.integers(0, US_PER_HOUR, len(ts))
    countries = np.array([c[0] for c in COUNTRIES])
    credit = users.credit_limit[u] * np.where(d >= users.raise_day[u], 2.0, 1.0)
    made = created <= w.end_us  # the snapshot is written 1-2 hours after its time
    u, d, ts, created, credit = u[made], d[made], ts[made], created[made], credit[made]
    order = np.lexsort((u, d))
    return pa.table(
        {
            "user_id": pa.array(users.user_id[u][order], pa.int64()),
            "snapshot_ts": _timestamps(ts[order]),
            "created_ts": _timestamps(created[order]),
            "account_age_days": pa.array(
                ((ts - users.signup_us[u]) // US_PER_DAY)[order], pa.int64()
            ),
            "credit_limit": pa.array(credit[order], pa.float64()),
            "country": pa.array(countries[users.country[u]][order], pa.string()),
            "is_verified": pa.array((users.verified_us[u] <= ts)[order], pa.bool_()),
        }
    )


def transactions(tx: Transactions, users: Users, merchants: Merchants) -> pa.Table:
    """The labeled entity rows, in time order, numbered in that order."""
    import numpy as np
    import pyarrow as pa

    order = np.lexsort((tx.user, tx.ts_us))
    return pa.table(
        {
            "transaction_id": pa.array(np.arange(1, len(order) + 1), pa.int64()),
            "user_id": pa.array(users.user_id[tx.user[order]], pa.int64()),
            "merchant_id": pa.array(merchants.merchant_id[tx.merchant[order]], pa.int64()),
            "event_timestamp": _timestamps(tx.ts_us[order]),
            "amount": pa.array(tx.cents[order] / 100, pa.float64()),
            "is_fraud": pa.array(tx.is_fraud[order], pa.bool_()),
        }
    )


def _timestamps(us: np.ndarray) -> pa.Array:
    import pyarrow as pa

    return pa.array(us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def generate(
    out: Path, scale: float = 1.0, seed: int = 7, end: datetime | None = None
) -> dict[str, int]:
    """Write the three example tables, ending at ``end``'s hour (default: the current hour),
    to ``out``; return each file's row count."""
    import numpy as np
    import pyarrow.parquet as pq

    w = Window.ending(end or datetime.now(UTC))
    rng = np.random.default_rng(seed)
    users = make_users(rng, max(20, round(USERS_PER_SCALE * scale)), w)
    merchants = make_merchants(rng, max(10, round(MERCHANTS_PER_SCALE * scale)))
    tx = make_transactions(rng, users, merchants, w)
    tables = {
        "user_profile": user_profile(rng, users, w),
        "merchant_stats": merchant_stats(rng, tx, merchants, w),
        "transactions": transactions(tx, users, merchants),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, out / f"{name}.parquet")
    return {name: table.num_rows for name, table in tables.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1 = ~3,000 users (default)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "data", help="output folder"
    )
    parser.add_argument(
        "--end",
        type=datetime.fromisoformat,
        default=None,
        help="the data's last hour, ISO-8601 (naive = UTC; default: the current hour)",
    )
    args = parser.parse_args()
    end = args.end
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    started = time.perf_counter()
    counts = generate(args.out, args.scale, args.seed, end)
    for name, rows in counts.items():
        print(f"{args.out / name}.parquet: {rows:,} rows")
    print(
        f"generated in {time.perf_counter() - started:.1f} s (scale {args.scale}, seed {args.seed})"
    )
    forget_derived_state(args.out)


# What earlier runs built from the previous data (it ended at another hour): an online store
# keeps rows and aggregation tiles of events the new data no longer has (no run can tell a
# source was rewritten), so served values would not be the new training rows.
DERIVED = ("online.db", "online.db-wal", "online.db-shm", "feature_log", "reports")


def forget_derived_state(folder: Path) -> None:
    """Remove the SQLite online store, feature log and reports built from earlier data."""
    import shutil

    removed = []
    for name in DERIVED:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    if removed:
        print(f"removed what was built from the previous data: {', '.join(removed)}")


if __name__ == "__main__":
    main()
