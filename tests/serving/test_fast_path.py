"""The fast path of /get-online-features and /predict (serving/fastpath.py): it takes only
bodies pydantic would take unchanged, and answers exactly as the FastAPI route does."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_process import ExampleRepo, ServiceProcess

from serving.fastpath import FEATURES_FIELDS, PREDICT_FIELDS, plain_body
from serving.schemas import OnlineFeaturesRequest, PredictRequest

pytestmark = pytest.mark.xdist_group("serving")

FEATURES = ["user_profile:country", "user_profile:account_age_days"]
ROUTED = "application/json; charset=utf-8"  # JSON too, but not the fast path's exact type

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(
    ["features", "feature_service", "entities", "full_feature_names", "include_features",
     "include_feature_view_version_metadata", "other"]
)  # fmt: skip
bodies = st.dictionaries(
    field_names, json_values | st.dictionaries(st.text(), st.lists(json_values))
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_the_fast_path_takes_only_what_pydantic_takes_unchanged(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    for fields, model in ((FEATURES_FIELDS, OnlineFeaturesRequest), (PREDICT_FIELDS, PredictRequest)):  # fmt: skip
        taken = plain_body(raw, fields)
        if taken is None:
            continue
        validated = model.model_validate_json(raw)  # raises if the fast path took a bad body
        assert {k: getattr(validated, k) for k in taken} == taken


def test_plain_bodies_are_taken_and_coercible_or_bad_ones_left_to_the_route() -> None:
    plain = {
        "features": FEATURES,
        "entities": {"user_id": [1, "x", None]},
        "full_feature_names": True,
    }
    assert plain_body(json.dumps(plain).encode(), FEATURES_FIELDS) == plain
    assert plain_body(b'{"entities": {"user_id": [1]}}', PREDICT_FIELDS) == {
        "entities": {"user_id": [1]}
    }
    for body in (
        b"{not json",
        b"[1]",
        b'{"features": ["a:b"]}',  # no entities
        b'{"entities": {"user_id": 1}}',  # not a column
        b'{"entities": {"user_id": [1]}, "full_feature_names": "true"}',  # pydantic coerces it
        b'{"entities": {"user_id": [1]}, "features": ["\\ud800"]}',  # pydantic refuses it
        b'{"entities": {"\\ud800": [1]}}',
        b'{"entities": {"user_id": [1]}, "extra": 1}',
        b"[" * 100_000 + b"]" * 100_000,  # json's RecursionError: the route's 400
    ):
        assert plain_body(body, FEATURES_FIELDS) is None, body
    assert plain_body(b'{"entities": {}, "features": []}', PREDICT_FIELDS) is None


def _both(server: ServiceProcess, path: str, body: object, **headers: str) -> list[Any]:
    """The answer of the fast path and of the FastAPI route to one request: status, body."""
    answers = []
    for content_type in ("application/json", ROUTED):
        answer = server.client.post(
            path, content=json.dumps(body), headers={"Content-Type": content_type, **headers}
        )
        answers.append((answer.status_code, answer.json(), answer.headers.get("x-request-id")))
    return answers


def test_the_fast_path_answers_as_the_route_does(
    service: ServiceProcess, example: ExampleRepo
) -> None:
    pairs = example.pairs(3)
    cases: list[tuple[str, object]] = [
        ("/get-online-features", {"features": FEATURES, "entities": pairs}),
        (
            "/get-online-features",
            {"feature_service": "fraud_v1", "entities": pairs, "full_feature_names": True},
        ),
        ("/get-online-features", {"features": ["user_profile:countyr"], "entities": pairs}),  # 404
        ("/get-online-features", {"features": FEATURES, "entities": {"merchant_id": [1]}}),  # 400
        ("/get-online-features", {"entities": pairs}),  # 400: neither features nor service
        ("/predict", {"entities": pairs, "include_features": True}),
        ("/predict", {"entities": {"user_id": ["1"], "merchant_id": [2]}}),  # 400: key type
    ]
    for path, body in cases:
        fast, routed = _both(service, path, body, **{"X-Request-ID": "same-id"})
        assert fast == routed, (path, body)
    assert fast[0] == 400 and "user_id" in fast[1]["detail"]


def test_the_route_still_answers_what_the_fast_path_leaves(service: ServiceProcess) -> None:
    body = {"entities": {"user_id": [1], "merchant_id": [2]}, "include_features": "true"}
    answer = service.post("/predict", body)  # pydantic's lax bool: 200, with the features
    assert answer.status_code == 200 and "features" in answer.json()
    # a repeated X-Request-ID goes to the route, which reads the first (as Starlette does)
    answer = service.client.post(
        "/predict",
        content=json.dumps({"entities": {"user_id": [1], "merchant_id": [2]}}),
        headers=[
            ("Content-Type", "application/json"),
            ("X-Request-ID", "a"),
            ("X-Request-ID", "b"),
        ],
    )
    assert answer.status_code == 200 and answer.json()["request_id"] == "a"
    answer = service.client.post(
        "/predict",
        content=b'{"entities": {"user_id": [1]}}',
        headers={"Content-Type": "text/plain"},
    )
    assert answer.status_code == 422


def test_a_client_leaving_mid_body_is_no_server_error(service: ServiceProcess) -> None:
    before = service.metric("featurestore_unhandled_errors_total")
    with socket.create_connection(("127.0.0.1", service.port)) as client:
        client.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"entities": '
        )
    time.sleep(1)  # the server sees the disconnect
    assert service.metric("featurestore_unhandled_errors_total") == before
    assert "unexpected error" not in service.log()
