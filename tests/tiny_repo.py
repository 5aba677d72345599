"""A tiny feature repo written into a folder, with every definition attribute a parameter.

``write_repo(tmp_path, ttl="timedelta(days=2)")`` writes ``featurestore.yaml``,
``definitions.py`` (one entity ``driver``, one view ``stats``, one service ``service``
projecting ``stats:conv_rate``) and two identical Parquet sources, so a test can change one
attribute and watch what ``plan``/``apply`` make of it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "join_keys": ["driver_id"],
    "ttl": "timedelta(days=1)",
    "fields": [("conv_rate", "Float32"), ("trips", "Int64")],
    "path": "data/stats.parquet",
    "timestamp_field": "event_ts",
    "created": "created_ts",
    "online": True,
    "description": "Driver statistics.",
    "tags": {"team": "rides"},
    "owner": "rides@example.com",
    "service_features": ["conv_rate"],
}

DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, FileSource
from featurestore.types import Bool, Float32, Float64, Int32, Int64, String

driver = Entity(name="driver", join_keys={join_keys!r})

stats = FeatureView(
    name="stats",
    entities=[driver],
    ttl={ttl},
    schema=[{schema}],
    source=FileSource(
        path={path!r}, timestamp_field={timestamp_field!r}, created_timestamp_column={created!r}
    ),
    online={online!r},
    description={description!r},
    tags={tags!r},
    owner={owner!r},
)

service = FeatureService(name="service", features=[stats[{service_features!r}]])
"""

CONFIG = """\
project: tiny
registry: data/registry.json
offline_store: {type: duckdb}
online_store: {type: sqlite, path: data/online.db}
"""


def source_table() -> Any:
    """Rows of the tiny source: int32 and string keys, two event and two created columns."""
    import pyarrow as pa

    base = datetime(2026, 1, 1, tzinfo=UTC)
    ts = pa.timestamp("us", tz="UTC")
    hours = [base + timedelta(hours=h) for h in range(4)]
    return pa.table(
        {
            "driver_id": pa.array([1, 2, 1, 2], pa.int32()),
            "driver_key": pa.array(["a", "b", "a", "b"], pa.string()),
            "event_ts": pa.array(hours, ts),
            "event_ts2": pa.array(hours, ts),
            "created_ts": pa.array(hours, ts),
            "created_ts2": pa.array(hours, ts),
            "conv_rate": pa.array([0.1, 0.2, 0.3, 0.4], pa.float32()),
            "trips": pa.array([1, 2, 3, 4], pa.int64()),
            "extra": pa.array([1.0, 2.0, 3.0, 4.0], pa.float64()),
        }
    )


def definitions(**overrides: Any) -> str:
    """The text of ``definitions.py`` with some attributes overridden."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown repo attributes {unknown}")
    params = {**DEFAULTS, **overrides}
    params["schema"] = ", ".join(
        f"Field(name={name!r}, dtype={dtype})" for name, dtype in params.pop("fields")
    )
    return DEFINITIONS.format(**params)


def write_repo(root: Path, table: Any = None, **overrides: Any) -> Path:
    """Write (or rewrite the definitions of) a tiny repo in ``root``; return ``root``."""
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    (root / "featurestore.yaml").write_text(CONFIG)
    (root / "definitions.py").write_text(definitions(**overrides))
    data = root / "data"
    if table is not None or not (data / "stats.parquet").exists():
        data.mkdir(exist_ok=True)
        table = source_table() if table is None else table
        pq.write_table(table, data / "stats.parquet")
        pq.write_table(table, data / "stats_copy.parquet")
    return root
