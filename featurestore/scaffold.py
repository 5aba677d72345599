"""``featurestore init DIR``: a small working repo with its own example data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from featurestore.errors import ConfigError

CONFIG = """\
project: {project}
registry: data/registry.json
offline_store: {{type: duckdb}}
online_store: {{type: sqlite, path: data/online.db}}
feature_log: {{path: data/feature_log}}
"""

DEFINITIONS = '''\
"""Feature definitions: edit, then run 'featurestore plan' and 'featurestore apply'."""

from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, FileSource
from featurestore.types import Float32, Int64

driver = Entity(name="driver", join_keys=["driver_id"])

driver_stats_source = FileSource(
    path="data/driver_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

driver_hourly_stats = FeatureView(
    name="driver_hourly_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[
        Field(name="driver_id", dtype=Int64),
        Field(name="conv_rate", dtype=Float32),
        Field(name="acc_rate", dtype=Float32),
        Field(name="avg_daily_trips", dtype=Int64),
    ],
    source=driver_stats_source,
    description="Hourly driver statistics.",
)

driver_activity = FeatureService(name="driver_activity", features=[driver_hourly_stats])
'''


def scaffold(directory: Path, project: str | None = None) -> list[Path]:
    """Create a repo folder with featurestore.yaml, definitions and example data."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = Path(directory)
    config = directory / "featurestore.yaml"
    if config.exists():
        raise ConfigError(f"{config} already exists; refusing to overwrite a repo")
    project = project or directory.resolve().name.replace("-", "_")
    if not project.isidentifier():
        raise ConfigError(f"project name {project!r} is not a valid name; pass --project")
    (directory / "data").mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG.format(project=project))
    definitions = directory / "definitions.py"
    definitions.write_text(DEFINITIONS)

    rng = np.random.default_rng(0)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [end - timedelta(hours=h) for h in range(48)]
    rows = [(d, t) for d in range(1001, 1006) for t in hours]
    table = pa.table(
        {
            "driver_id": pa.array([d for d, _ in rows], pa.int64()),
            "event_timestamp": pa.array([t for _, t in rows], pa.timestamp("us", tz="UTC")),
            "created": pa.array(
                [t + timedelta(minutes=5) for _, t in rows], pa.timestamp("us", tz="UTC")
            ),
            "conv_rate": pa.array(rng.random(len(rows)), pa.float32()),
            "acc_rate": pa.array(rng.random(len(rows)), pa.float32()),
            "avg_daily_trips": pa.array(rng.integers(0, 1000, len(rows)), pa.int64()),
        }
    )
    source = directory / "data" / "driver_stats.parquet"
    pq.write_table(table, source)
    return [config, definitions, source]
