"""The parity theorem over real HTTP: what ``/predict`` serves is the training set's row.

One ``featurestore serve`` process (real app, real HTTP on 127.0.0.1) serves a model bound to
a service with a plain view (``profile``: every dtype, ttl 10 minutes), a windowed
aggregation view (``activity``, keyed by a string) and a request-time view (``od``: reads a
feature of each and the request field ``x``). The model is trained once, on fixed data;
each hypothesis example then writes random sources (tests/strategies.py: ties on event and
created time and complete ties, missing created times, nulls, NaN and extreme floats, late
rows, several files), times a few minutes before the wall clock (the service reads at its
own ``now``), drops the views from a throwaway Redis and materializes them up to now,
then calls ``/predict`` with ``include_features`` for random entities, unknown keys and
duplicates included, and random request values, nulls included.

For every example: the features ``/predict`` returned equal what the feature log recorded
(values, statuses, event times), the log's values equal the training set built for those
entities at the logged ``request_ts`` (the model's ``as_of``) bit for bit, Arrow type
included, and the predictions (returned and logged) equal ``models.predict`` on that
training set.
"""

from __future__ import annotations

import math
import shutil
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_process import ServiceProcess, wait_for_log

from featurestore import FeatureStore, models
from featurestore.online.base import open_online_store
from tests.reference import RefView, SourceRow
from tests.strategies import BASE, KEY_VALUES, ViewCase, source_rows, write_view_files

# Rows with a null key or event time are skipped on both paths (and warned about).
pytestmark = pytest.mark.filterwarnings("ignore::featurestore.errors.SkippedRowsWarning")

# The plain view's features are named for tests/strategies.py's feature kinds.
PROFILE = {
    "count": "Int64",
    "small": "Int32",
    "amount": "Float64",
    "rate": "Float32",
    "label": "String",
    "flag": "Bool",
    "seen_at": "UnixTimestamp",
}
ACTIVITY = {"amount": "Float64", "small": "Int32", "label": "String"}
DEFINITIONS = """\
from datetime import timedelta

import pandas as pd

from featurestore import (
    Aggregation, Entity, FeatureService, FeatureView, Field, FileSource, RequestSource,
    on_demand_feature_view,
)
from featurestore.types import Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"])
merchant = Entity(name="merchant", join_keys=["merchant"])

profile = FeatureView(
    name="profile",
    entities=[user],
    ttl=timedelta(minutes=10),
    schema=[Field(name="user_id", dtype=Int64), Field(name="count", dtype=Int64),
            Field(name="small", dtype=Int32), Field(name="amount", dtype=Float64),
            Field(name="rate", dtype=Float32), Field(name="label", dtype=String),
            Field(name="flag", dtype=Bool), Field(name="seen_at", dtype=UnixTimestamp)],
    source=FileSource(path="data/profile", timestamp_field="event_ts",
                      created_timestamp_column="created_ts"),
)

minute = timedelta(minutes=1)
activity = FeatureView(
    name="activity",
    entities=[merchant],
    source=FileSource(path="data/activity", timestamp_field="event_ts",
                      created_timestamp_column="created_ts"),
    aggregations=[
        Aggregation(column="amount", function="count", time_window=10 * minute,
                    slide_interval=minute),
        Aggregation(column="amount", function="sum", time_window=10 * minute),
        Aggregation(column="amount", function="mean", time_window=20 * minute,
                    slide_interval=minute),
        Aggregation(column="amount", function="max", time_window=timedelta(hours=1)),
        Aggregation(column="amount", function="stddev", time_window=15 * minute,
                    slide_interval=minute),
        Aggregation(column="small", function="sum", time_window=10 * minute,
                    slide_interval=minute),
        Aggregation(column="label", function="last", time_window=20 * minute),
    ],
)

req = RequestSource(name="req", schema=[Field(name="x", dtype=Float64)])


@on_demand_feature_view(
    sources=[profile[["amount"]], activity[["count_amount_10m"]], req],
    schema=[Field(name="s", dtype=Float64), Field(name="p", dtype=Float32),
            Field(name="gt", dtype=Bool)],
)
def od(inputs: pd.DataFrame) -> pd.DataFrame:
    amount = inputs["amount"].astype("Float64")
    out = pd.DataFrame(index=inputs.index)
    out["s"] = amount + inputs["x"]
    out["p"] = amount * inputs["count_amount_10m"]
    out["gt"] = amount > inputs["x"]
    return out


svc = FeatureService(name="svc", features=[profile, activity, od])
"""
USERS = [*KEY_VALUES["user_id"], 99]  # 99: never in the data
MERCHANTS = [*KEY_VALUES["merchant"], "zz"]  # "zz": never in the data
EPOCH = "1970-01-01T00:00:00Z"  # a value without an event time (NOT_FOUND, on-demand)
X_VALUES = st.sampled_from([0.5, -2.0, 3.25, 0.0, 1e10, -1e-300, None])


@dataclass
class Served:
    repo: Path
    server: ServiceProcess
    artifact: models.ModelArtifact


@st.composite
def view_data(
    draw: st.DrawFn, name: str, entity: str, key: str, features: dict[str, str]
) -> ViewCase:
    """One or two source files of messy rows (tests/strategies.py), plus complete ties."""
    kinds = {feature: feature for feature in features}  # features are named for their kinds
    rows = source_rows([key], kinds, has_created=True)
    files = [draw(st.lists(rows, min_size=1, max_size=10)) for _ in range(draw(st.integers(1, 2)))]
    for pick, fresh in draw(st.lists(st.tuples(st.integers(0, 99), rows), max_size=3)):
        original = [r for f in files for r in f][pick % sum(map(len, files))]
        files[-1].append(
            SourceRow(original.keys, original.event_ts, original.created_ts, fresh.values)
        )
    ref = RefView(name=name, join_keys=[key], ttl=None, features=list(features), files=files)
    return ViewCase(
        ref=ref,
        entity=entity,
        dtypes=features,
        int32_keys=draw(st.booleans()),
        timestamp_unit=draw(st.sampled_from(["us", "ns"])),
        naive_timestamps=draw(st.booleans()),
    )


@st.composite
def requests(draw: st.DrawFn) -> dict[str, list[Any]]:
    """Entity columns for /predict: keys from the data's pools plus unknown ones, and x."""
    n = draw(st.integers(1, 8))
    return {
        "user_id": draw(st.lists(st.sampled_from(USERS), min_size=n, max_size=n)),
        "merchant": draw(st.lists(st.sampled_from(MERCHANTS), min_size=n, max_size=n)),
        "x": draw(st.lists(X_VALUES, min_size=n, max_size=n)),
    }


def shifted(case: ViewCase, by: timedelta) -> ViewCase:
    """The case with every event and created time moved by ``by`` (values unchanged)."""

    def move(t: datetime | None) -> datetime | None:
        return None if t is None else t + by

    files = [
        [SourceRow(r.keys, move(r.event_ts), move(r.created_ts), r.values) for r in f]
        for f in case.ref.files
    ]
    ref = RefView(case.ref.name, case.ref.join_keys, None, case.ref.features, files)
    return ViewCase(
        ref, case.entity, case.dtypes, case.int32_keys, case.timestamp_unit, case.naive_timestamps
    )


def write_sources(repo: Path, cases: list[ViewCase]) -> None:
    for case in cases:
        folder = repo / "data" / case.ref.name
        shutil.rmtree(folder, ignore_errors=True)
        write_view_files(case, folder)


def training_cases() -> list[ViewCase]:
    """Fixed data to train on: every user and merchant with rows over the last minutes."""
    rng = np.random.default_rng(7)
    merchants = KEY_VALUES["merchant"]

    def rows(key: str, values: list[Any], features: dict[str, str]) -> list[SourceRow]:
        out = []
        for i in range(60):
            event = BASE + timedelta(minutes=int(rng.integers(0, 9)))
            row = {
                "count": int(rng.integers(-100, 100)),
                "small": int(rng.integers(-100, 100)),
                "amount": float(rng.normal()),
                "rate": float(rng.choice([0.5, -1.25, 3.0])),
                "label": str(rng.choice(["a", "b", "c"])),
                "flag": bool(rng.random() < 0.5),
                "seen_at": BASE + timedelta(minutes=int(rng.integers(-5, 5))),
            }
            values_of = {f: row[f] for f in features}
            out.append(SourceRow({key: values[i % len(values)]}, event, event, values_of))
        return out

    profile = RefView(
        "profile", ["user_id"], None, list(PROFILE), [rows("user_id", USERS[:-1], PROFILE)]
    )
    activity = RefView(
        "activity", ["merchant"], None, list(ACTIVITY), [rows("merchant", merchants, ACTIVITY)]
    )
    return [
        ViewCase(profile, "user", PROFILE, False, "us", False),
        ViewCase(activity, "merchant", ACTIVITY, False, "us", False),
    ]


def anchor() -> timedelta:
    """How far to move generated times (minutes -1 .. 14 after BASE, tests/strategies.py)
    so that all of them are in the past: the last 16 minutes before the current minute."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=15) - BASE


def materialize(repo: Path) -> None:
    """Start from nothing (the previous example's rows and tiles dropped), then
    materialize everything up to now."""
    store = FeatureStore(repo)
    with open_online_store(store.config) as online:
        for view in store.state.views:
            online.drop_view(view)
    store.materialize(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    store.close()


@pytest.fixture
def served(tmp_path: Path, redis_factory: Any) -> Iterator[Served]:
    """The repo applied, a small model trained once on fixed data, and one server."""
    repo = tmp_path / "repo"
    repo.mkdir()
    redis_url = redis_factory().url
    (repo / "featurestore.yaml").write_text(
        "project: predict_props\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
        f"online_store: {{type: redis, url: '{redis_url}', socket_timeout: 2}}\n"
        "feature_log: {path: data/feature_log}\n"
    )
    (repo / "definitions.py").write_text(DEFINITIONS)
    by = anchor()
    write_sources(repo, [shifted(case, by) for case in training_cases()])
    store = FeatureStore(repo)
    store.apply()
    # Labels drawn from what the training set holds, so that the model splits on features.
    rng = np.random.default_rng(11)
    n = 300
    entities = pd.DataFrame(
        {
            "user_id": rng.choice(USERS, n),
            "merchant": pd.array(rng.choice(MERCHANTS, n), dtype="string"),
            "x": rng.choice([0.5, -2.0, 3.25, 0.0], n),
            "event_timestamp": BASE + by + pd.to_timedelta(rng.integers(0, 15 * 60, n), unit="s"),
        }
    )
    frame = store.get_historical_features(
        entities, feature_service="svc", full_feature_names=True
    ).to_df()
    signal = frame["profile__amount"].fillna(0) + frame["activity__count_amount_10m"].fillna(0) / 4
    entities["label"] = (signal.to_numpy(dtype=float) + rng.normal(0, 0.3, n) > 0.5).astype(int)
    artifact = models.train(
        repo,
        service="svc",
        entities=entities,
        label="label",
        out=tmp_path / "model",
        num_boost_round=10,
        params={"min_data_in_leaf": 5},
        threads=1,
        progress=False,
    )
    store.close()
    materialize(repo)
    server = ServiceProcess(repo, tmp_path / "model")
    try:
        yield Served(repo, server, artifact)
    finally:
        server.stop()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    profile=view_data("profile", "user", "user_id", PROFILE),
    activity=view_data("activity", "merchant", "merchant", ACTIVITY),
    entities=requests(),
)
def test_predict_over_http_serves_the_training_set_row_bit_for_bit(
    served: Served, profile: ViewCase, activity: ViewCase, entities: dict[str, list[Any]]
) -> None:
    by = anchor()
    write_sources(served.repo, [shifted(profile, by), shifted(activity, by)])
    materialize(served.repo)
    request_id = f"prop-{time.time_ns()}"
    answer = served.server.post(
        "/predict",
        {"entities": entities, "include_features": True},
        headers={"X-Request-ID": request_id},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    n = len(entities["user_id"])
    log = wait_for_log(served.repo, request_id, n)
    assert log["user_id"].to_pylist() == entities["user_id"]
    assert log["merchant"].to_pylist() == entities["merchant"]
    assert log["x"].to_pylist() == entities["x"]
    assert log["prediction"].to_pylist() == body["predictions"]
    (request_ts,) = set(log["request_ts"].to_pylist())

    # The response's feature vector is the logged one.
    names = body["features"]["metadata"]["feature_names"]
    for name, result in zip(names, body["features"]["results"], strict=True):
        if name in entities:
            assert result["values"] == entities[name], name
            continue
        assert result["statuses"] == log[f"{name}__status"].to_pylist(), name
        column = log[name]
        got = [_bits(from_json(v, column.type), column.type) for v in result["values"]]
        assert got == [_bits(v, column.type) for v in column.to_pylist()], name
        times = [
            EPOCH if t is None else f"{t:%Y-%m-%dT%H:%M:%S.%fZ}"
            for t in log[f"{name}__event_ts"].to_pylist()
        ]
        assert result["event_timestamps"] == times, name

    # The training set at the logged request time: same types, same bits, same predictions.
    entity_df = pd.DataFrame(
        {
            "user_id": pd.array(entities["user_id"], dtype="Int64"),
            "merchant": pd.array(entities["merchant"], dtype="string"),
            "x": pd.array(entities["x"], dtype="Float64"),
            "event_timestamp": request_ts,
        }
    )
    artifact = served.artifact
    offline = (
        FeatureStore(served.repo)
        .get_historical_features(
            entity_df,
            feature_service="svc",
            full_feature_names=True,
            as_of=artifact.metadata.as_of,  # type: ignore[arg-type]  # "event" or "created"
        )
        .to_arrow()
    )
    for spec in artifact.features:
        column = spec.column
        assert log[column].type == offline[column].type, column
        assert _column_bits(log[column]) == _column_bits(offline[column]), (column, request_ts)
    batch = models.predict(artifact, served.repo, entity_df)
    assert batch["prediction"].tolist() == body["predictions"]


def from_json(value: Any, arrow_type: pa.DataType) -> Any:
    """A JSON feature value as the Python value of ``arrow_type`` (proto3's float strings)."""
    if value is None:
        return None
    if pa.types.is_floating(arrow_type):
        return float(value)  # "NaN", "Infinity", "-Infinity" parse too
    if pa.types.is_timestamp(arrow_type):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _column_bits(column: pa.ChunkedArray) -> list[Any]:
    """Values with floats as their IEEE bits (NaN payloads and -0.0 compared exactly)."""
    if pa.types.is_floating(column.type):
        width = pa.uint32() if column.type == pa.float32() else pa.uint64()
        return column.combine_chunks().view(width).to_pylist()
    return column.to_pylist()


def _bits(value: Any, arrow_type: pa.DataType) -> Any:
    """A value as JSON can carry it: floats by their IEEE bits, every NaN alike."""
    if value is None or not pa.types.is_floating(arrow_type):
        return value
    if math.isnan(value):
        return "NaN"
    return struct.pack("<f" if arrow_type == pa.float32() else "<d", value)
