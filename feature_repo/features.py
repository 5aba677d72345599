"""Fraud-detection features: user profiles, merchant statistics, user activity, and the
transaction's amount against the user's recent average, computed at request time.

The data comes from ``generate.py`` (``python feature_repo/generate.py``). ``user_activity``
is computed by the store itself from the raw transactions (windowed aggregations), the same
way for training and for serving.
"""

from datetime import timedelta

import pandas as pd
from entities import merchant, user

from featurestore import (
    Aggregation,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    RequestSource,
    on_demand_feature_view,
)
from featurestore.types import Bool, Float32, Float64, Int64, String

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="account_age_days", dtype=Int64),
        Field(name="credit_limit", dtype=Float64),
        Field(name="country", dtype=String),
        Field(name="is_verified", dtype=Bool),
    ],
    source=FileSource(
        path="data/user_profile.parquet",
        timestamp_field="snapshot_ts",
        created_timestamp_column="created_ts",
    ),
    description="Daily snapshot of each user's account.",
    owner="risk-team@example.com",
)

merchant_stats = FeatureView(
    name="merchant_stats",
    entities=[merchant],
    ttl=timedelta(days=3),
    schema=[
        Field(name="merchant_id", dtype=Int64),
        Field(name="category", dtype=String),
        Field(name="fraud_rate_7d", dtype=Float32),
        Field(name="avg_amount_30d", dtype=Float64),
        Field(name="n_tx_7d", dtype=Int64),
    ],
    source=FileSource(
        path="data/merchant_stats.parquet",
        timestamp_field="event_ts",
        created_timestamp_column="created_ts",
    ),
    description="Daily merchant statistics; some days are corrected late (same event time, "
    "later created time).",
    owner="risk-team@example.com",
)

user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=timedelta(hours=12),  # online: at most 12 hours since the last materialization
    source=FileSource(path="data/transactions.parquet", timestamp_field="event_timestamp"),
    aggregations=[
        # named as the features were when generate.py computed them by hand
        Aggregation(
            column="amount", function="count", time_window=timedelta(hours=1), name="tx_count_1h"
        ),
        Aggregation(
            column="amount", function="count", time_window=timedelta(hours=24), name="tx_count_24h"
        ),
        Aggregation(
            column="amount", function="sum", time_window=timedelta(hours=24), name="amount_sum_24h"
        ),
        Aggregation(
            column="amount", function="max", time_window=timedelta(days=7), name="amount_max_7d"
        ),
        # default names: {function}_{column}_{window}
        Aggregation(column="amount", function="mean", time_window=timedelta(days=7)),
        Aggregation(column="amount", function="stddev", time_window=timedelta(days=7)),
    ],
    description="Each user's recent transactions, aggregated from the raw transactions "
    "strictly before each time (no future leakage).",
    owner="risk-team@example.com",
)

fraud_v1 = FeatureService(
    name="fraud_v1",
    features=[user_profile, merchant_stats, user_activity],
    description="Features of the first fraud model.",
)

txn = RequestSource(
    name="txn",
    schema=[Field(name="amount", dtype=Float64)],
    description="The transaction being scored: an entity_df column offline, a request field "
    "online.",
)


@on_demand_feature_view(
    sources=[user_activity[["tx_count_24h", "amount_sum_24h"]], txn],
    schema=[Field(name="amount_vs_avg_24h", dtype=Float64)],
    description="The amount against the user's average over the 24 hours before it (null "
    "without earlier transactions in that window).",
)
def txn_features(inputs: pd.DataFrame) -> pd.DataFrame:
    average = inputs["amount_sum_24h"] / inputs["tx_count_24h"].where(inputs["tx_count_24h"] > 0)
    out = pd.DataFrame(index=inputs.index)
    out["amount_vs_avg_24h"] = inputs["amount"] / average
    return out


fraud_v2 = FeatureService(
    name="fraud_v2",
    features=[user_profile, merchant_stats, user_activity, txn_features],
    description="fraud_v1 and the transaction's amount against the user's 24-hour average.",
)
