"""A small fraud-like repo with real signal, written into tmp_path, for model tests.

Two views keyed by ``user_id``: ``risk`` (``score`` Float64, ``country`` String,
``n_tx`` Int32; daily snapshots, ttl 3 days) and ``flags`` (``verified`` Bool, no ttl), and
a service ``svc`` over both. The label depends on ``score``, ``country`` and ``verified``
at each entity row's time, so a model trained through the point-in-time join learns it.
Every definition attribute the tests change is a ``write_repo`` parameter.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurestore.models import ModelArtifact

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
USERS = 150
COUNTRIES = ["US", "DE", "FR", "NG", "BR"]
COUNTRY_EFFECT = {"US": -1.0, "DE": -1.0, "FR": -0.5, "NG": 1.5, "BR": 1.0}

DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, FileSource
from featurestore.types import Bool, Float32, Float64, Int32, Int64, String

user = Entity(name="user", join_keys=["user_id"])

risk = FeatureView(
    name="risk",
    entities=[user],
    ttl={risk_ttl},
    schema=[{risk_schema}],
    source=FileSource(path={risk_path!r}, timestamp_field="event_ts",
                      created_timestamp_column="created_ts"),
    description={risk_description!r},
)

flags = FeatureView(
    name="flags",
    entities=[user],
    ttl=None,
    schema=[Field(name="user_id", dtype=Int64), Field(name="verified", dtype=Bool)],
    source=FileSource(path="data/flags.parquet", timestamp_field="event_ts"),
)

svc = FeatureService(name="svc", features=[{service_features}])
"""

RISK_FIELDS = [("score", "Float64"), ("country", "String"), ("n_tx", "Int32")]


def write_repo(root: Path, **overrides: Any) -> Path:
    """Write (or rewrite) the repo's definitions; data is written once per folder."""
    settings: dict[str, Any] = {
        "risk_ttl": "timedelta(days=3)",
        "risk_fields": RISK_FIELDS,
        "risk_path": "data/risk.parquet",
        "risk_description": "Daily risk snapshot.",
        "service_features": "risk, flags",
        **overrides,
    }
    schema = ", ".join(
        f"Field(name={n!r}, dtype={t})"
        for n, t in [("user_id", "Int64"), *settings.pop("risk_fields")]
    )
    root.mkdir(parents=True, exist_ok=True)
    (root / "featurestore.yaml").write_text(
        "project: models_test\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
        "online_store: {type: sqlite, path: data/online.db}\n"
    )
    (root / "definitions.py").write_text(DEFINITIONS.format(risk_schema=schema, **settings))
    if not (root / "data" / "risk.parquet").exists():
        write_data(root / "data")
    return root


def write_data(data: Path, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    data.mkdir(parents=True, exist_ok=True)
    users = np.arange(1, USERS + 1)
    days = [START + timedelta(days=d) for d in range(DAYS)]
    rows = pd.DataFrame([(u, d) for d in days for u in users], columns=["user_id", "event_ts"])
    rows["score"] = rng.normal(size=len(rows))
    rows.loc[rng.random(len(rows)) < 0.05, "score"] = np.nan
    rows["country"] = pd.array(rng.choice(COUNTRIES, size=len(rows)), dtype="string")
    rows["n_tx"] = rng.integers(0, 20, size=len(rows)).astype("int32")
    rows["segment"] = pd.array(rng.choice(["a", "b"], size=len(rows)), dtype="string")  # unused
    rows["created_ts"] = rows["event_ts"] + timedelta(hours=1)
    rows.to_parquet(data / "risk.parquet", index=False)
    rows.to_parquet(data / "risk_copy.parquet", index=False)
    flags = pd.DataFrame({"user_id": users, "event_ts": START - timedelta(days=1)}).assign(
        verified=rng.random(USERS) < 0.6
    )
    flags.to_parquet(data / "flags.parquet", index=False)


def labeled_entities(root: Path, n: int = 3000, seed: int = 5) -> pd.DataFrame:
    """Entity rows with a label drawn from the features each row sees at its time."""
    rng = np.random.default_rng(seed)
    risk = pd.read_parquet(root / "data" / "risk.parquet")
    flags = pd.read_parquet(root / "data" / "flags.parquet").set_index("user_id")
    # Rows fall between 2 and 20 hours after a day's snapshot was created, so the snapshot
    # of that day is what the point-in-time join (as of created time) returns.
    day = rng.integers(0, DAYS, size=n)
    user = rng.integers(1, USERS + 1, size=n)
    offset = pd.to_timedelta(rng.integers(2 * 60, 20 * 60, size=n), unit="min")
    snapshot_time = pd.Timestamp(START) + pd.to_timedelta(day, unit="D")
    ts = snapshot_time + offset
    snap = risk.set_index(["user_id", "event_ts"])
    keys = list(zip(user, snapshot_time, strict=True))
    seen = snap.loc[keys]
    logit = (
        2.0 * seen["score"].fillna(0).to_numpy()
        + seen["country"].map(COUNTRY_EFFECT).to_numpy(dtype=float)
        - 1.5 * flags.loc[user, "verified"].to_numpy(dtype=float)
    )
    label = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "user_id": user.astype("int64"),
            "event_timestamp": ts,
            "is_fraud": label.astype("int64"),
        }
    )


@dataclass
class Trained:
    """A repo, its labeled entities and a model trained on them (shared by a test module)."""

    repo: Path
    entities: Path
    model: Path
    artifact: ModelArtifact

    def copy(self, dest: Path) -> Trained:
        """An independent copy of repo and model that a test may change."""
        shutil.copytree(self.repo, dest / "repo")
        shutil.copytree(self.model, dest / "model")
        repo = dest / "repo"
        return Trained(repo, repo / self.entities.name, dest / "model", self.artifact)
