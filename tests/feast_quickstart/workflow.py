"""The quickstart workflow's data, shared by both sides: Feast's (feast_side.py, under
.venv-feast) and ours (test_feast_quickstart.py). Plain pandas: imports neither library.

The rows and values are Feast's own ``test_workflow.py``'s (``feast init`` generates it), with
fixed times where it reads the wall clock.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd

ONLINE_ROWS = [
    {"driver_id": 1001, "val_to_add": 1000, "val_to_add_2": 2000},
    {"driver_id": 1002, "val_to_add": 1001, "val_to_add_2": 2002},
    {"driver_id": 999, "val_to_add": 1, "val_to_add_2": 2},
]
FEATURES = [
    "driver_hourly_stats:acc_rate",
    "transformed_conv_rate:conv_rate_plus_val1",
    "transformed_conv_rate:conv_rate_plus_val2",
]
HISTORICAL = [
    "driver_hourly_stats:conv_rate",
    "driver_hourly_stats:acc_rate",
    "driver_hourly_stats:avg_daily_trips",
    "transformed_conv_rate:conv_rate_plus_val1",
    "transformed_conv_rate:conv_rate_plus_val2",
]
# Requests whose feature order Feast 0.67 answers the same way every time (full names): it
# groups features by view, views in order of first reference (one to an on-demand view
# counting as one to each of its sources), then each on-demand view's outputs in its
# function's order. (Within one view with several features asked, Feast's order is a
# Python set's: it changes with the process's hash seed; ``GROUPED`` checks only the
# grouping.)
ORDERED = {
    "on_demand_outputs_reversed": [
        "transformed_conv_rate:conv_rate_plus_val2",
        "transformed_conv_rate:conv_rate_plus_val1",
    ],
    "views_and_on_demand_interleaved": [
        "driver_hourly_stats_fresh:acc_rate",
        "transformed_conv_rate:conv_rate_plus_val2",
        "driver_hourly_stats:conv_rate",
        "transformed_conv_rate:conv_rate_plus_val1",
    ],
    "on_demand_before_its_source": [
        "transformed_conv_rate:conv_rate_plus_val1",
        "driver_hourly_stats_fresh:acc_rate",
        "driver_hourly_stats:conv_rate",
    ],
}
GROUPED = [
    "driver_hourly_stats:conv_rate",
    "driver_hourly_stats_fresh:acc_rate",
    "driver_hourly_stats:avg_daily_trips",
]
AFTER_PUSH = [
    "driver_hourly_stats_fresh:conv_rate",
    "driver_hourly_stats_fresh:avg_daily_trips",
    "transformed_conv_rate_fresh:conv_rate_plus_val1",
]


def entity_df() -> pd.DataFrame:
    """test_workflow.py's training rows."""
    return pd.DataFrame(
        {
            "driver_id": [1001, 1002, 1003],
            "event_timestamp": [
                datetime(2021, 4, 12, 10, 59, 42),
                datetime(2021, 4, 12, 8, 12, 10),
                datetime(2021, 4, 12, 16, 40, 26),
            ],
            "label_driver_reported_satisfaction": [1, 5, 3],
            "val_to_add": [1, 2, 3],
            "val_to_add_2": [10, 20, 30],
        }
    )


def push_df(push_ts: datetime) -> pd.DataFrame:
    """test_workflow.py's pushed row, at ``push_ts``."""
    return pd.DataFrame.from_dict(
        {
            "driver_id": [1001],
            "event_timestamp": [push_ts],
            "created": [push_ts],
            "conv_rate": [1.0],
            "acc_rate": [1.0],
            "avg_daily_trips": [1000],
            "driver_metadata": [{"vehicle_type": "truck", "rating": "5.0"}],
            "driver_config": [json.dumps({"max_distance_km": 500, "preferred_zones": ["north"]})],
            "driver_profile": [{"name": "driver_1001_updated", "age": "30"}],
        }
    )


def after_push_df(push_ts: datetime) -> pd.DataFrame:
    """The pushed driver's training row at the push's time."""
    return pd.DataFrame(
        {"driver_id": [1001], "event_timestamp": [push_ts], "val_to_add": [5], "val_to_add_2": [7]}
    )


def registry_listing(store: Any) -> dict[str, Any]:
    """What the SDK's registry accessors return for the quickstart repo, by name (a Feast
    or a featurestore ``FeatureStore``)."""

    def names(objects: Any) -> list[str]:
        return sorted(o.name for o in objects)

    team = {"team": "driver_performance"}
    return {
        "entities": names(store.list_entities()),
        "feature_views": names(store.list_feature_views()),
        "feature_views_of_team": names(store.list_feature_views(tags=team)),
        "feature_views_of_nobody": names(store.list_feature_views(tags={"team": "nobody"})),
        "on_demand_feature_views": names(store.list_on_demand_feature_views()),
        "all_feature_views": names(store.list_all_feature_views()),
        "feature_services": names(store.list_feature_services()),
        "data_sources": names(store.list_data_sources()),
        "entity": store.get_entity("driver").name,
        "feature_view": [f.name for f in store.get_feature_view("driver_hourly_stats").features],
        "on_demand_feature_view": [
            f.name for f in store.get_on_demand_feature_view("transformed_conv_rate").features
        ],
        "feature_service": store.get_feature_service("driver_activity_v1").name,
        "data_source": type(store.get_data_source("driver_stats_push_source")).__name__,
    }
