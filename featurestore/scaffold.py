"""``featurestore init DIR``: a small working repo with its own example data.

It never overwrites: when any file it would create exists (a user's ``definitions.py`` or
data), it refuses, naming them, and creates nothing.
"""

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
    """Create a repo folder with featurestore.yaml, definitions and example data.

    Raises ``ConfigError`` naming the files when any of them exists already.
    """
    directory = Path(directory)
    config = directory / "featurestore.yaml"
    definitions = directory / "definitions.py"
    source = directory / "data" / "driver_stats.parquet"
    existing = [str(p) for p in (config, definitions, source) if p.exists() or p.is_symlink()]
    if existing:
        raise ConfigError(
            f"refusing to overwrite {', '.join(existing)}: 'featurestore init' only creates "
            "a new repo; choose an empty folder, or move these files away"
        )
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is a file, not a folder; choose another path")
    project = project or directory.resolve().name.replace("-", "_")
    if not project.isidentifier():
        raise ConfigError(f"project name {project!r} is not a valid name; pass --project")
    files = {
        config: CONFIG.format(project=project).encode(),
        definitions: DEFINITIONS.encode(),
        source: _example_data(),
    }
    created: list[Path] = []
    try:
        source.parent.mkdir(parents=True, exist_ok=True)
        for path, data in files.items():
            with path.open("xb") as f:  # "x": fail rather than overwrite a file made meanwhile
                created.append(path)
                f.write(data)
    except OSError as exc:
        for path in created:
            path.unlink(missing_ok=True)
        raise ConfigError(f"cannot create the repo in {directory}: {exc}") from None
    return created


def _example_data() -> bytes:
    """Two days of hourly stats for five drivers, ending at the current hour (Parquet)."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

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
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
