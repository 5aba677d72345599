"""Parity while the service runs: what /predict scores is the training set's row, bit for bit.

For N entities, the feature log records the exact ``now`` each read used; the training set
built for those entities at that time (the model's ``as_of``) must hold the same values,
Arrow type and bits included, build the same model input, and give the same predictions as
``predict-batch``. ``/get-online-features`` must answer what the SDK answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from service_process import ExampleRepo, ServiceProcess

from featurestore import FeatureStore, models
from featurestore.feature_log import read_log
from featurestore.models import build_matrix
from featurestore.online.response import NOT_FOUND, PRESENT

pytestmark = pytest.mark.xdist_group("serving")

FEATURES = [
    "user_profile:country",
    "user_profile:credit_limit",
    "user_profile:is_verified",
    "merchant_stats:fraud_rate_7d",
    "user_activity:tx_count_1h",
    "user_activity:amount_max_7d",
]


def test_predict_scores_the_training_set_row_bit_for_bit(
    example: ExampleRepo, tmp_path: Path
) -> None:
    copy = example.copy(tmp_path)  # same Redis, its own feature log
    entities = copy.pairs(40)
    entities["user_id"] += [1]  # unknown keys: NOT_FOUND, scored as missing values
    entities["merchant_id"] += [2]
    with ServiceProcess(copy.repo, copy.model) as server:
        answers = [
            server.post("/predict", {"entities": entities}, headers={"X-Request-ID": "req-a"}),
            server.post("/predict", {"entities": entities, "include_features": True}),
        ]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert answers[0].headers["X-Request-ID"] == "req-a"
    served = [a.json() for a in answers]
    assert served[1]["request_id"] == answers[1].headers["X-Request-ID"]

    artifact = models.load(copy.model)
    log = read_log(copy.log_path)
    n = len(entities["user_id"])
    assert log.num_rows == 2 * n  # the server stopped cleanly: every row written
    for answer in served:
        rows = log.filter(pa.compute.equal(log["request_id"], answer["request_id"]))
        assert rows.num_rows == n
        assert rows["user_id"].to_pylist() == entities["user_id"]
        assert rows["prediction"].to_pylist() == answer["predictions"]
        assert set(rows["model_sha256"].to_pylist()) == {artifact.metadata.model_sha256}
        assert set(rows["model_fingerprint"].to_pylist()) == {answer["model_fingerprint"]}
        views = FeatureStore(copy.repo).state.views  # the definitions each row was read with
        service = FeatureStore(copy.repo).get_feature_service("fraud_v1")
        read = sorted({ref.split(":")[0] for ref in service.refs})
        expected = ",".join(f"{v}:{views[v].fingerprint[:12]}" for v in read)
        assert set(rows["definitions"].to_pylist()) == {expected}
        (request_ts,) = set(rows["request_ts"].to_pylist())

        # The training set for these entities at the logged request time.
        entity_df = pd.DataFrame(entities).assign(event_timestamp=request_ts)
        job = FeatureStore(copy.repo).get_historical_features(
            entity_df,
            feature_service="fraud_v1",
            full_feature_names=True,
            as_of=artifact.metadata.as_of,
        )
        offline = job.to_arrow()
        columns = [spec.column for spec in artifact.features]
        for column in columns:
            assert rows[column].type == offline[column].type, column
            assert _bits(rows[column]) == _bits(offline[column]), column
        statuses = rows[f"{columns[0]}__status"].to_pylist()
        assert statuses[-1] == NOT_FOUND and PRESENT in statuses
        logged_matrix = build_matrix(rows.select(columns), artifact.features)
        offline_matrix = build_matrix(job.to_df(), artifact.features)
        assert logged_matrix.tobytes() == offline_matrix.tobytes()

        batch = models.predict(artifact, copy.repo, entity_df)
        assert batch["prediction"].tolist() == answer["predictions"]

    # include_features: the vector scored, in Feast's shape, equal to the log's values.
    vector = served[1]["features"]
    names = vector["metadata"]["feature_names"]
    rows = log.filter(pa.compute.equal(log["request_id"], served[1]["request_id"]))
    for name, result in zip(names, vector["results"], strict=True):
        if name in entities:
            assert result["values"] == entities[name]
            continue
        assert result["statuses"] == rows[f"{name}__status"].to_pylist()
        expected = rows[name].to_pylist()
        if pa.types.is_floating(rows[name].type):  # JSON floats: compare as the stored type
            dtype = np.float32 if rows[name].type == pa.float32() else np.float64
            got = np.array([np.nan if v is None else v for v in result["values"]], dtype)
            want = np.array([np.nan if v is None else v for v in expected], dtype)
            assert got.tobytes() == want.tobytes(), name
        else:
            assert result["values"] == expected, name


def _bits(column: pa.ChunkedArray) -> list[object]:
    """Values with floats as their IEEE bits (NaN payloads and -0.0 compared exactly)."""
    if pa.types.is_floating(column.type):
        width = pa.uint32() if column.type == pa.float32() else pa.uint64()
        return column.combine_chunks().view(width).to_pylist()
    return column.to_pylist()


def test_get_online_features_answers_what_the_sdk_answers(
    example: ExampleRepo, service: ServiceProcess
) -> None:
    entities = example.pairs(25, seed=1)
    entities["user_id"].append(7)
    entities["merchant_id"].append(8)
    for full in (False, True):
        answer = service.post(
            "/get-online-features",
            {"features": FEATURES, "entities": entities, "full_feature_names": full},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        sdk = FeatureStore(example.repo).get_online_features(
            FEATURES, entities, full_feature_names=full
        )
        expected = sdk.to_dict()
        names = body["metadata"]["feature_names"]
        assert names == list(expected)
        dtypes = dict(sdk.feature_dtypes)
        for name, result in zip(names, body["results"], strict=True):
            if name in entities:
                assert result["values"] == entities[name]
                assert set(result["statuses"]) == {PRESENT}
                continue
            assert result["statuses"] == sdk.statuses[name], name
            if dtypes[name].name == "Float32":  # the shortest decimal that reads back exactly
                values = [None if v is None else np.float32(v) for v in result["values"]]
                assert values == [None if v is None else np.float32(v) for v in expected[name]]
                assert all(
                    json.dumps(v) == str(np.float32(v)) for v in result["values"] if v is not None
                )
            else:
                assert result["values"] == expected[name], name
            times = [
                "1970-01-01T00:00:00Z" if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                for t in sdk.event_timestamps[name]
            ]
            assert result["event_timestamps"] == times, name


def test_a_feature_service_by_name_reads_the_same(
    service: ServiceProcess, example: ExampleRepo
) -> None:
    entities = example.pairs(3, seed=2)
    by_service = service.post(
        "/get-online-features", {"feature_service": "fraud_v1", "entities": entities}
    ).json()
    refs = FeatureStore(example.repo).state.service("fraud_v1").refs
    by_refs = service.post("/get-online-features", {"features": refs, "entities": entities}).json()
    assert by_service["metadata"] == by_refs["metadata"]
    assert [r["values"] for r in by_service["results"]] == [r["values"] for r in by_refs["results"]]


def test_join_keys_come_back_in_the_order_the_request_gives_them(
    example: ExampleRepo, service: ServiceProcess
) -> None:
    """Feast 0.67's server (and SDK) answers the join keys in the order of the request's
    ``entities`` (recorded on a two-entity repo: asked for ``users:f, merchants:g`` with
    ``{"merchant_id": ..., "user_id": ...}`` it answered ``merchant_id, user_id, f, g``),
    whatever order the views use them in. So do we, over HTTP and in the SDK (its rows'
    keys in the first row's order, as Feast's SDK reads them)."""
    pairs = example.pairs(2, seed=3)
    for entities in (pairs, dict(reversed(pairs.items()))):
        answer = service.post("/get-online-features", {"features": FEATURES, "entities": entities})
        assert answer.status_code == 200, answer.text
        names = answer.json()["metadata"]["feature_names"]
        assert names[:2] == list(entities)
        columns = zip(*entities.values(), strict=True)
        rows = [dict(zip(entities, keys, strict=True)) for keys in columns]
        sdk = FeatureStore(example.repo).get_online_features(FEATURES, rows).to_dict()
        assert list(sdk)[:2] == list(entities)
