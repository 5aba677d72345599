"""The prediction service on a Redis Cluster: the example repo materialized into the
session's throwaway cluster (tests/redis_cluster.py) and served by a real ``featurestore
serve``, answers over HTTP exactly what the service on one Redis answers (features,
statuses, event times, predictions), and its readiness reports the cluster's state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from service_process import ExampleRepo, ServiceProcess

pytestmark = pytest.mark.cluster
FEATURES = [
    "user_profile:country",
    "user_profile:credit_limit",
    "merchant_stats:fraud_rate_7d",
    "user_activity:tx_count_1h",
]


def test_the_service_on_a_cluster_answers_what_it_answers_on_one_server(
    example: ExampleRepo, service: ServiceProcess, tmp_path: Path, cluster_url: str
) -> None:
    on_cluster = example.copy(tmp_path, cluster_url)
    on_cluster.configure(
        cluster_url,
        online_store=f"{{type: redis, url: '{cluster_url}', cluster: true, socket_timeout: 2}}",
    )
    on_cluster.materialize()
    entities = example.pairs(30, seed=3)
    entities["user_id"].append(7)  # unknown keys: NOT_FOUND on both
    entities["merchant_id"].append(8)
    requests = [
        ("/get-online-features", {"features": FEATURES, "entities": entities}),
        ("/predict", {"entities": entities, "include_features": True}),
    ]
    with ServiceProcess(on_cluster.repo, on_cluster.model) as cluster_service:
        assert cluster_service.client.get("/ready").status_code == 200
        answers = [(cluster_service.post(p, b), service.post(p, b)) for p, b in requests]
    for (path, _), (got, expected) in zip(requests, answers, strict=True):
        assert got.status_code == expected.status_code == 200, (path, got.text)
        mine, theirs = got.json(), expected.json()
        for body in (mine, theirs):
            body.pop("request_id", None)
        assert mine == theirs, path
