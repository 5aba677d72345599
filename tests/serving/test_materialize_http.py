"""Feast's ``/materialize`` and ``/materialize-incremental`` over real HTTP: a real
``featurestore serve`` materializing into its own throwaway Redis.

What a run over HTTP writes equals what the SDK's run writes (the same online answers, bit
for bit, plain and aggregated views); ``?async=true`` answers 202 at once, a second run of a
view still in progress is 409 unless forced; bad bodies are 422 naming the field, unknown
views 404, a failing run 500 naming the view with no watermark moved; the token applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from service_process import ExampleRepo, ServiceProcess

from featurestore import FeatureStore

pytestmark = pytest.mark.xdist_group("serving")


def _copy(example: ExampleRepo, tmp_path: Path, redis_factory: Callable[..., Any]) -> ExampleRepo:
    """The example on its own empty Redis: nothing materialized there yet."""
    return example.copy(tmp_path, redis_factory().url)


def _answers(repo: Path, entities: dict[str, list[int]], now: datetime) -> str:
    """Every fraud_v1 feature for ``entities`` at ``now``: values (repr: bit for bit),
    statuses and event times."""
    store = FeatureStore(repo)
    response = store.get_online_features(store.get_feature_service("fraud_v1"), entities, now=now)
    return repr((response.to_dict(), response.statuses, response.event_timestamps))


def _views(server: ServiceProcess) -> dict[str, str | None]:
    views: dict[str, str | None] = server.client.get("/ready").json()["views"]
    return views


def test_materialize_over_http_writes_what_the_sdk_writes(
    example: ExampleRepo, tmp_path: Path, redis_factory: Callable[..., Any]
) -> None:
    copy = _copy(example, tmp_path, redis_factory)
    with ServiceProcess(copy.repo, copy.model) as server:
        assert server.client.get("/ready").status_code == 503  # nothing materialized
        body = {"start_ts": "2000-01-01T00:00:00", "end_ts": copy.end.isoformat()}
        answer = server.post("/materialize", body)
        assert answer.status_code == 200, answer.text
        runs = {run["view"]: run for run in answer.json()["feature_views"]}
        assert set(runs) == {"user_profile", "merchant_stats", "user_activity"}
        assert all(run["rows_written"] > 0 for run in runs.values())
        assert runs["user_profile"]["end"] == copy.end.isoformat()
        assert runs["user_profile"]["watermark_end"] == copy.end.isoformat()
        assert server.client.get("/ready").status_code == 200
        assert server.post("/predict", {"entities": copy.pairs(3)}).status_code == 200
        done = server.metric(
            "featurestore_materializations_total", kind="materialize", outcome="succeeded"
        )
        assert done == 1
    entities = copy.pairs(40, seed=3)
    entities["user_id"].append(-1)  # unknown: NOT_FOUND on both
    entities["merchant_id"].append(-1)
    for now in (copy.end, copy.end + timedelta(hours=5)):  # aggregates age out the same way
        assert _answers(copy.repo, entities, now) == _answers(example.repo, entities, now)


def test_async_runs_answer_202_and_a_second_run_of_a_busy_view_is_409_unless_forced(
    example: ExampleRepo, tmp_path: Path, redis_factory: Callable[..., Any]
) -> None:
    copy = _copy(example, tmp_path, redis_factory)
    path = "/materialize-incremental?async=true"
    end = copy.end.isoformat()
    with ServiceProcess(copy.repo, copy.model) as server:
        # a run claims its views under the registry's lock: holding it keeps runs in progress
        with FileLock(str(copy.repo / "data" / "registry.json") + ".lock"):
            first = server.post(path, {"end_ts": end, "feature_views": ["user_profile"]})
            assert first.status_code == 202, first.text
            assert first.json() == {"status": "accepted", "feature_views": ["user_profile"]}
            both = ["merchant_stats", "user_profile"]
            busy = server.post(path, {"end_ts": end, "feature_views": both})
            assert busy.status_code == 409, busy.text
            assert busy.json()["error"] == "MaterializationInProgress"
            assert "user_profile" in busy.json()["detail"]
            assert "merchant_stats" not in busy.json()["detail"]
            other = server.post(path, {"end_ts": end, "feature_views": ["merchant_stats"]})
            assert other.status_code == 202, other.text
            forced = server.post(f"{path}&force=true", {"end_ts": end, "feature_views": both})
            assert forced.status_code == 202, forced.text
            time.sleep(0.3)
            assert set(_views(server).values()) == {None}  # nothing written yet
        deadline = time.monotonic() + 60
        succeeded = 0.0
        while time.monotonic() < deadline and succeeded < 3:
            time.sleep(0.1)
            succeeded = server.metric(
                "featurestore_materializations_total",
                kind="materialize-incremental",
                outcome="succeeded",
            )
        assert succeeded == 3, server.log()
        views = _views(server)
        assert views["user_profile"] == views["merchant_stats"] == end
        assert views["user_activity"] is None
        # every view now: the same online answers as the SDK's runs
        answer = server.post("/materialize-incremental", {"end_ts": end})
        assert answer.status_code == 200, answer.text
    entities = copy.pairs(30, seed=4)
    assert _answers(copy.repo, entities, copy.end) == _answers(example.repo, entities, copy.end)


LATER = "2020-01-01T00:00:00Z"
FUTURE = "2100-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/materialize", {"start_ts": "yesterday", "end_ts": LATER}, 422, "body.start_ts"),
        ("/materialize", {"end_ts": LATER}, 422, "start_ts and end_ts are required"),
        ("/materialize", {"start_ts": LATER, "end_ts": "2019-01-01"}, 422, "is before start_ts"),
        ("/materialize", {"start_ts": LATER, "end_ts": FUTURE}, 422, "body.end_ts: Value error, 2100-01-01T00:00:00+00:00 is after the current time"),
        ("/materialize-incremental", {"end_ts": FUTURE}, 422, "is after the current time"),
        ("/materialize", {"start_ts": LATER, "end_ts": LATER, "version": "v2"}, 422, "body.version"),
        ("/materialize", {"start": LATER, "end_ts": LATER}, 422, "body.start"),
        ("/materialize", {"start_ts": "0001-01-01", "end_ts": LATER}, 422, "outside the accepted time range"),
        ("/materialize-incremental", {}, 422, "body.end_ts"),
        ("/materialize-incremental", {"end_ts": "9999-12-31T00:00:00+05:00"}, 422, "9999-12-30T19:00:00+00:00 is outside"),
        ("/materialize-incremental", {"end_ts": LATER, "feature_views": ["user_profil"]}, 404, "'user_profil'"),
    ],
)  # fmt: skip
def test_bad_bodies_and_unknown_views_are_refused_naming_them(
    service: ServiceProcess, path: str, body: dict[str, Any], status: int, says: str
) -> None:
    for suffix in ("", "?async=true"):
        answer = service.post(path + suffix, body)
        assert answer.status_code == status, answer.text
        assert says in answer.json()["detail"]


def test_a_failing_run_is_500_naming_the_view_and_moves_no_watermark(
    example: ExampleRepo, tmp_path: Path, redis_factory: Callable[..., Any]
) -> None:
    copy = _copy(example, tmp_path, redis_factory)
    with ServiceProcess(copy.repo, copy.model, env={"FEATURESTORE_API_TOKEN": "s3cret"}) as server:
        body = {"end_ts": copy.end.isoformat(), "feature_views": ["user_profile"]}
        assert server.post("/materialize-incremental", body).status_code == 401
        server.client.headers["Authorization"] = "Bearer s3cret"
        (copy.repo / "data" / "user_profile.parquet").write_bytes(b"not parquet")
        answer = server.post("/materialize-incremental", body)
        assert answer.status_code == 500, answer.text
        assert answer.json()["error"] == "MaterializationError"
        assert "feature view 'user_profile'" in answer.json()["detail"]
        assert _views(server)["user_profile"] is None
        failed = server.metric(
            "featurestore_materializations_total",
            kind="materialize-incremental",
            outcome="failed",
        )
        assert failed == 1
        assert "Traceback" not in server.log()
