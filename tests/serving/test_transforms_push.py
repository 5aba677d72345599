"""Request-time transformations and pushes over real HTTP (``featurestore serve``).

One server (module scope, with an API token) on tests/transform_repo.py's repo: a model bound
to service ``svc`` (``stats:cnt`` and the on-demand view ``scored``, which reads ``stats`` and
the request field ``amount``, and raises on an amount of 13), its data made fresh by pushes.
Proven here: ``/predict`` scores exactly the training set's row at the logged request time
(transformed features included, bit for bit), ``/push`` with Feast's body reaches both paths
and its token applies, bad pushes write nothing, a failing function answers 500 naming the
view and is counted while the worker keeps serving, and the feature log records request
fields, transformed features and their inputs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pytest
from service_process import ServiceProcess, wait_for_log

from featurestore import FeatureStore, models
from tests.transform_repo import ODFV, T0, write_repo

pytestmark = pytest.mark.xdist_group("serving")

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAISING = ODFV.replace(
    'out["ratio"] = inputs["amount"] / inputs["avg"]',
    'if (inputs["amount"] == 13).any():\n        raise ValueError("unlucky amount")\n'
    '    out["ratio"] = inputs["amount"] / inputs["avg"]',
)


@dataclass
class Served:
    repo: Path
    model: Path
    server: ServiceProcess


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, redis_session_factory: Any
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("transforms_serving")
    repo = root / "repo"
    repo.mkdir()
    store = write_repo(repo, RAISING, online=redis_session_factory().url)
    store.apply()
    labels = pd.DataFrame(
        {
            "user_id": [1, 2, 1, 2] * 10,
            "event_timestamp": [T0 + timedelta(hours=1, minutes=i) for i in range(40)],
            "amount": [float(i % 7) for i in range(40)],
            "label": [i % 2 for i in range(40)],
        }
    )
    models.train(repo, service="svc", entities=labels, label="label", out=root / "model",
                 num_boost_round=3, progress=False, threads=1)  # fmt: skip
    now = datetime.now(UTC)
    store.materialize(T0 - timedelta(days=10), now)
    fresh = pd.DataFrame(
        {"user_id": [1, 2], "ts": [now - timedelta(minutes=5)] * 2, "avg": [4.0, 0.3],
         "cnt": [7, 8], "tag": ["x", "y"]}
    )  # fmt: skip
    store.push("stats_push", fresh, to="online_and_offline")
    store.close()
    server = ServiceProcess(repo, root / "model", env={"FEATURESTORE_API_TOKEN": TOKEN})
    server.client.headers.update(AUTH)  # every request of these tests carries the token
    yield Served(repo, root / "model", server)
    server.stop()


def _bits(values: list[Any], arrow_type: pa.DataType) -> list[Any]:
    if pa.types.is_float32(arrow_type):
        return [None if v is None else struct.pack("<f", v) for v in values]
    if pa.types.is_float64(arrow_type):
        return [None if v is None else struct.pack("<d", v) for v in values]
    return values


def test_predict_scores_the_training_set_row_transformed_features_included(
    served: Served,
) -> None:
    entities = {"user_id": [1, 2, 99], "amount": [2.5, 0.7, 1.0]}
    answer = served.server.post(
        "/predict", {"entities": entities}, headers={"X-Request-ID": "parity-1"}
    )
    assert answer.status_code == 200, answer.text
    served.server.post("/predict", {"entities": {"user_id": [1], "amount": [1.0]}})
    log = wait_for_log(served.repo, "parity-1", 3)
    (request_ts,) = set(log["request_ts"].to_pylist())
    artifact = models.load(served.model)
    entity_df = pd.DataFrame(entities).assign(event_timestamp=request_ts)
    offline = (
        FeatureStore(served.repo)
        .get_historical_features(
            entity_df, feature_service="svc", full_feature_names=True, as_of=artifact.metadata.as_of
        )
        .to_arrow()
    )
    for spec in artifact.features:
        column = spec.column
        assert log[column].type == offline[column].type, column
        assert _bits(log[column].to_pylist(), log[column].type) == _bits(
            offline[column].to_pylist(), offline[column].type
        ), column
    assert log["scored__ratio"].to_pylist() == [2.5 / 4.0, 0.7 / 0.3, None]
    assert log["scored__ratio__status"].to_pylist() == ["PRESENT", "PRESENT", "NULL_VALUE"]
    assert log["scored__ratio__event_ts"].null_count == 3
    assert log["amount"].to_pylist() == entities["amount"]  # the request field, typed
    assert log.schema.field("amount").type == pa.float64()
    assert log["stats__avg"].to_pylist() == [4.0, 0.3, None]  # an input not asked for
    batch = models.predict(artifact, served.repo, entity_df)
    assert batch["prediction"].tolist() == answer.json()["predictions"]


def test_a_function_that_raises_is_a_500_naming_the_view_counted_and_the_worker_lives_on(
    served: Served,
) -> None:
    server = served.server
    before = server.metric("featurestore_transformation_errors_total", view="scored")
    answer = server.post("/predict", {"entities": {"user_id": [1], "amount": [13.0]}})
    assert answer.status_code == 500
    body = answer.json()
    assert (body["error"], body["view"]) == ("TransformationError", "scored")
    assert "its function raised ValueError: unlucky amount" in body["detail"]
    assert server.metric("featurestore_transformation_errors_total", view="scored") == before + 1
    again = server.post("/predict", {"entities": {"user_id": [1], "amount": [12.0]}})
    assert again.status_code == 200
    assert server.process.poll() is None


def test_a_missing_request_field_is_a_400_naming_the_field_and_the_view(served: Served) -> None:
    answer = served.server.post(
        "/get-online-features", {"features": ["scored:ratio"], "entities": {"user_id": [1]}}
    )
    assert answer.status_code == 400
    assert (
        "no request field 'amount', which on-demand feature view 'scored'"
        in answer.json()["detail"]
    )


def test_a_request_field_that_is_not_unicode_is_a_400_naming_the_field(served: Served) -> None:
    """JSON's "\\ud800" parses to a lone surrogate, which no string dtype can hold."""
    body = b'{"features": ["scored:ratio"], "entities": {"user_id": [1], "amount": ["\\ud800"]}}'
    for path in ("/get-online-features", "/predict"):
        payload = (
            body if path != "/predict" else body.replace(b'"features": ["scored:ratio"], ', b"")
        )
        answer = served.server.client.post(
            path, content=payload, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert (
            "request field 'amount' of on-demand feature view 'scored'" in answer.json()["detail"]
        )


def test_a_push_column_named_with_a_lone_surrogate_is_a_400(served: Served) -> None:
    body = b'{"push_source_name": "stats_push", "df": {"user_id": [1], "\\ud800": [1]}}'
    answer = served.server.client.post(
        "/push", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "PushError"


def test_push_over_http_reaches_both_paths_and_the_token_applies(served: Served) -> None:
    server = served.server
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    body = {
        "push_source_name": "stats_push",
        "df": {"user_id": [2], "ts": [at.isoformat()], "avg": [0.5], "cnt": [9], "tag": ["z"]},
        "to": "online_and_offline",
        "allow_registry_cache": True,
    }
    assert httpx.post(f"{server.url}/push", json=body).status_code == 401  # no token
    answer = server.post("/push", body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "push_source_name": "stats_push",
        "to": "online_and_offline",
        "rows": 1,
        "views": ["stats"],
        "online_written": {"stats": 1},
    }
    features = server.post(
        "/get-online-features",
        {"features": ["stats:avg", "scored:ratio"], "entities": {"user_id": [2], "amount": [1.0]}},
    ).json()
    assert [r["values"][0] for r in features["results"]] == [2, 0.5, 2.0]
    entity_df = pd.DataFrame({"user_id": [2], "event_timestamp": [at], "amount": [1.0]})
    offline = FeatureStore(served.repo).get_historical_features(entity_df, ["stats:avg"]).to_df()
    assert offline["avg"].tolist() == [0.5]
    assert server.metric("featurestore_pushed_rows_total", source="stats_push") >= 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"push_source_name": "nope", "df": {"user_id": [1]}}, 404, "no applied feature view reads push source 'nope'"),
        ({"push_source_name": "stats_push", "df": {"user_id": [1], "ts": ["2024-01-01T00:00:00Z"], "avg": [1.0], "cnt": [1]}, "to": "online_and_offline"}, 400, "column 'tag' (feature of view 'stats') is missing"),
        ({"push_source_name": "stats_push", "df": {"user_id": [1], "ts": ["2024-01-01T00:00:00Z"], "avg": ["high"], "cnt": [1], "tag": ["t"]}}, 400, "column 'avg' is Float64 but holds"),
        ({"push_source_name": "stats_push", "df": {"user_id": [1]}, "to": "both"}, 400, "to='both' is not a push mode"),
        ({"push_source_name": "stats_push", "df": {"user_id": [1], "ts": ["2200-01-01T00:00:00Z"], "avg": [1.0], "cnt": [1], "tag": ["t"]}, "to": "online_and_offline"}, 400, "row 0 has event time 2200-01-01T00:00:00+00:00, after the push time"),
        ({"push_source_name": "stats_push", "df": {"user_id": [2**64], "ts": ["2024-01-01T00:00:00Z"], "avg": [1.0], "cnt": [1], "tag": ["t"]}, "to": "online_and_offline"}, 400, "column 'user_id'"),
        ({"push_source_name": "stats_push", "df": {"user_id": [1], "ts": ["2024-01-01T00:00:00Z"], "avg": [1.0], "cnt": [-(2**70)], "tag": ["t"]}, "to": "online_and_offline"}, 400, "column 'cnt'"),
    ],
)  # fmt: skip
def test_a_bad_push_is_refused_naming_the_problem_and_writes_nothing(
    served: Served, body: dict[str, Any], status: int, message: str
) -> None:
    folder = served.repo / "data" / "stats" / "_pushed"
    before = sorted(folder.glob("*.parquet"))
    answer = served.server.post("/push", body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert sorted(folder.glob("*.parquet")) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict", '{"entities": {"user_id": [1], "amount": [1e400]}}'),
        ("/get-online-features", '{"features": ["scored:ratio"], "entities": {"user_id": [1], "amount": [-2e308]}}'),
        ("/push", '{"push_source_name": "stats_push", "df": {"user_id": [1], "ts": ["2024-01-01T00:00:00Z"], "avg": [1e400], "cnt": [1], "tag": ["t"]}, "to": "online_and_offline"}'),
    ],
)  # fmt: skip
def test_a_json_number_beyond_float64_is_a_422_naming_it_not_infinity(
    served: Served, path: str, body: str
) -> None:
    """Defect: Python's JSON parser reads 1e400 as Infinity, so a request field or a pushed
    value beyond Float64's range was served, scored, logged and stored as Infinity; the
    service's one JSON reader (``encoding.loads``) now refuses the number, naming it."""
    folder = served.repo / "data" / "stats" / "_pushed"
    before = sorted(folder.glob("*.parquet"))
    answer = served.server.client.post(
        path, content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    number = "1e400" if "1e400" in body else "-2e308"
    assert f"the number {number} is beyond Float64's range" in answer.json()["detail"]
    assert sorted(folder.glob("*.parquet")) == before
