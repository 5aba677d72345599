"""The quickstart workflow's data, shared by both sides: Feast's (feast_side.py, under
.venv-feast) and ours (test_feast_quickstart.py). Plain pandas: imports neither library.

The rows and values are Feast's own ``test_workflow.py``'s (``feast init`` generates it), with
fixed times where it reads the wall clock.
"""

from __future__ import annotations

import json
from datetime import datetime

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
