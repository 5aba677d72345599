"""The service while things change under it: apply, materialization, Redis going away and
coming back, SIGHUP reloads (1 and 2 workers), SIGTERM flushing the feature log."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from service_process import ExampleRepo, ServiceProcess

from featurestore import FeatureStore, models
from featurestore.feature_log import log_files, read_log
from featurestore.online.redis import ASYNC_CONNECTIONS

pytestmark = pytest.mark.xdist_group("serving")


def eventually(check: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def change_ttl(repo: Path) -> None:
    """Change user_activity's ttl and apply: its online data and watermark are dropped."""
    features = repo / "features.py"
    features.write_text(
        features.read_text().replace("ttl=timedelta(hours=12)", "ttl=timedelta(hours=6)")
    )
    FeatureStore(repo).apply()


def test_a_model_whose_views_changed_is_refused_at_start(own_example: ExampleRepo) -> None:
    change_ttl(own_example.repo)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "featurestore.cli",
            "serve",
            "--repo",
            str(own_example.repo),
            "--model",
            str(own_example.model),
            "--port",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "user_activity: changed" in result.stderr and "12h -> 6h" in result.stderr


def test_an_apply_that_changes_a_view_turns_predict_into_503_naming_it(
    own_example: ExampleRepo,
) -> None:
    entities = own_example.pairs(3)
    with ServiceProcess(own_example.repo, own_example.model) as server:
        assert server.post("/predict", {"entities": entities}).status_code == 200
        assert server.metric("featurestore_model_binding_matches") == 1
        change_ttl(own_example.repo)
        answer = server.post("/predict", {"entities": entities})
        assert answer.status_code == 503
        assert answer.json()["error"] == "ModelNotServable"
        assert "user_activity" in answer.json()["detail"] and "12h -> 6h" in answer.json()["detail"]
        ready = server.client.get("/ready")
        assert ready.status_code == 503
        checks = {p["check"]: p["detail"] for p in ready.json()["problems"]}
        assert "user_activity" in checks["binding"] and "user_activity" in checks["materialized"]
        assert server.metric("featurestore_model_binding_matches") == 0
        # What still exists is still served; the dropped view reads as never materialized.
        answer = server.post(
            "/get-online-features",
            {
                "features": ["user_profile:country", "user_activity:tx_count_1h"],
                "entities": entities,
            },
        )
        assert answer.status_code == 200
        country, activity = answer.json()["results"][1:]  # user_id, then the features
        assert "PRESENT" in country["statuses"] and set(activity["statuses"]) == {"NOT_FOUND"}


def test_predict_waits_for_every_view_to_be_materialized(
    example: ExampleRepo, tmp_path: Path, redis_factory: Callable[..., object]
) -> None:
    empty = redis_factory()
    copy = example.copy(tmp_path, empty.url)  # type: ignore[attr-defined]
    entities = copy.pairs(2)
    with ServiceProcess(copy.repo, copy.model) as server:
        answer = server.post("/predict", {"entities": entities})
        assert answer.status_code == 503
        detail = answer.json()["detail"]
        assert all(view in detail for view in ("user_profile", "merchant_stats", "user_activity"))
        assert "materialize" in detail
        assert "materialized" in {
            p["check"] for p in server.client.get("/ready").json()["problems"]
        }
        copy.materialize()
        eventually(
            lambda: server.post("/predict", {"entities": entities}).status_code == 200,
            what="predict after materialization",
        )
        assert server.client.get("/ready").json()["ready"] is True


def test_an_aggregated_view_materialized_past_now_is_not_ready_and_predict_is_503(
    example: ExampleRepo,
    tmp_path: Path,
    redis_factory: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its tiles cover events that have not happened (materialized on a machine whose clock
    runs a day ahead: materialize refuses an end after its own now): no read can answer
    until then, so the service says so (503, /ready), not 400 (a fault of the caller's
    request)."""
    import featurestore.materialize

    server_redis = redis_factory()
    copy = example.copy(tmp_path, server_redis.url)  # type: ignore[attr-defined]
    copy.materialize()
    ahead = datetime.now(UTC) + timedelta(days=1)
    monkeypatch.setattr(featurestore.materialize, "FUTURE_ALLOWANCE", timedelta(days=2))
    FeatureStore(copy.repo).materialize(copy.end, ahead, views=["user_activity"])
    with ServiceProcess(copy.repo, copy.model) as server:
        answer = server.post("/predict", {"entities": copy.pairs(2)})
        assert answer.status_code == 503, answer.text
        assert "user_activity" in answer.json()["detail"]
        ready = server.client.get("/ready")
        assert ready.status_code == 503
        problems = {p["check"]: p["detail"] for p in ready.json()["problems"]}
        assert "user_activity" in problems["materialized"]
        features = {"features": ["user_activity:tx_count_1h"], "entities": {"user_id": [1]}}
        answer = server.post("/get-online-features", features)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "MaterializedAheadError"


def test_redis_down_at_start_then_back_then_down_again(
    example: ExampleRepo, tmp_path: Path, redis_factory: Callable[..., object]
) -> None:
    server_redis = redis_factory()
    copy = example.copy(tmp_path, server_redis.url)  # type: ignore[attr-defined]
    entities = copy.pairs(2)
    features = {"features": ["user_profile:country"], "entities": entities}
    server_redis.stop()  # type: ignore[attr-defined]
    with ServiceProcess(copy.repo, copy.model) as server:
        assert server.client.get("/health").status_code == 200
        ready = server.client.get("/ready")
        assert ready.status_code == 503
        assert (
            "does not answer"
            in {p["check"]: p["detail"] for p in ready.json()["problems"]}["online_store"]
        )
        for path, body in (
            ("/predict", {"entities": entities}),
            ("/get-online-features", features),
        ):
            started = time.monotonic()
            answer = server.post(path, body)
            assert answer.status_code == 503 and time.monotonic() - started < 3  # socket_timeout 2
            assert answer.json()["error"] == "OnlineStoreUnavailable"
            assert "127.0.0.1" in answer.json()["detail"]

        server_redis.start()  # type: ignore[attr-defined]
        eventually(lambda: server.post("/get-online-features", features).status_code == 200)
        copy.materialize()
        eventually(lambda: server.post("/predict", {"entities": entities}).status_code == 200)

        server_redis.stop()  # type: ignore[attr-defined]
        assert server.post("/predict", {"entities": entities}).status_code == 503
        server_redis.start()  # type: ignore[attr-defined]  (empty: a restart lost the data)
        eventually(lambda: server.post("/get-online-features", features).status_code == 200)
        assert (
            "never materialized" in server.post("/predict", {"entities": entities}).json()["detail"]
        )
        copy.materialize()
        eventually(lambda: server.post("/predict", {"entities": entities}).status_code == 200)


def retrain(example: ExampleRepo, out: Path, rounds: int) -> str:
    """A new model on the same features; returns its sha256."""
    artifact = models.train(
        example.repo,
        service="fraud_v1",
        entities=example.repo / "data" / "transactions.parquet",
        label="is_fraud",
        out=out,
        num_boost_round=rounds,
        threads=1,
        progress=False,
    )
    return artifact.metadata.model_sha256


def replace_model(served: Path, new: Path) -> None:
    for name in ("model.txt", "metadata.json"):
        shutil.copy(new / name, served / f".{name}.tmp")
        (served / f".{name}.tmp").replace(served / name)


def test_sighup_reloads_the_model_and_keeps_the_old_one_when_the_new_is_refused(
    example: ExampleRepo, tmp_path: Path
) -> None:
    copy = example.copy(tmp_path)
    old_sha = models.load(copy.model).metadata.model_sha256
    new_sha = retrain(copy, tmp_path / "retrained", rounds=3)
    entities = copy.pairs(3)

    def served_sha() -> str:
        answer = server.post("/predict", {"entities": entities})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["model_sha256"])

    with ServiceProcess(copy.repo, copy.model) as server:
        assert served_sha() == old_sha
        replace_model(copy.model, tmp_path / "retrained")
        server.signal(signal.SIGHUP)
        eventually(lambda: served_sha() == new_sha, what="the retrained model served")
        assert server.metric("featurestore_model_reloads_total", outcome="loaded") == 1

        # A model file changed on disk: its checksum no longer matches, so it is refused.
        text = (copy.model / "model.txt").read_text()
        (copy.model / "model.txt").write_text(text.replace("shrinkage=", "shrinkage=1", 1))
        server.signal(signal.SIGHUP)
        eventually(
            lambda: server.metric("featurestore_model_reloads_total", outcome="refused") == 1
        )
        assert served_sha() == new_sha
        assert "does not match the checksum" in server.log()

        # A model bound to other features (trained where user_activity's ttl is 6h): refused
        # too, naming the view, and the old model stays.
        other = copy.copy(tmp_path / "other", copy.redis_url.replace("/0", "/1"))  # apart
        change_ttl(other.repo)
        retrain(other, tmp_path / "other_model", rounds=2)
        replace_model(copy.model, tmp_path / "other_model")
        server.signal(signal.SIGHUP)
        eventually(
            lambda: server.metric("featurestore_model_reloads_total", outcome="refused") == 2
        )
        assert served_sha() == new_sha
        assert "user_activity" in server.log() and "12h" in server.log()


def test_two_workers_reload_on_sighup_and_flush_every_row_on_sigterm(
    example: ExampleRepo, tmp_path: Path
) -> None:
    copy = example.copy(tmp_path)
    new_sha = retrain(copy, tmp_path / "retrained", rounds=3)
    entities = copy.pairs(5)
    served = []

    def predict(_: int) -> str:
        answer = server.post("/predict", {"entities": entities})
        assert answer.status_code == 200, answer.text
        served.append(answer.json()["request_id"])
        return str(answer.json()["model_sha256"])

    server = ServiceProcess(copy.repo, copy.model, workers=2)
    try:
        # /health answers once one worker is up; a SIGHUP before the other has installed its
        # handler would end it (uvicorn then starts it again, on the new model)
        eventually(
            lambda: server.client.get("/metrics").text.count("featurestore_model_info{") == 2,
            what="both workers started",
        )
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(predict, range(20)))
        replace_model(copy.model, tmp_path / "retrained")
        server.signal(signal.SIGHUP)
        eventually(
            lambda: server.metric("featurestore_model_reloads_total", outcome="loaded") == 2,
            what="both workers reloaded",
        )
        infos = server.client.get("/metrics").text
        live = re.findall(r'featurestore_model_info\{[^}]*sha256="(\w+)"[^}]*\} 1\.0', infos)
        assert live == [new_sha, new_sha], infos  # one line per worker, both on the new model
        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(predict, range(40))) == {new_sha}
        # Per worker: at most ASYNC_CONNECTIONS for reads, one for watermarks: bounded.
        client = redis.Redis.from_url(copy.redis_url)
        clients = [c for c in client.client_list() if c["cmd"] != "client|list"]
        client.close()
        assert 2 <= len(clients) <= 2 * (ASYNC_CONNECTIONS + 1), clients
    finally:
        assert server.stop() == 0
    log = read_log(copy.log_path)
    assert log.num_rows == 60 * 5  # every entity served, exactly once
    assert sorted(set(log["request_id"].to_pylist())) == sorted(served)
    pids = {f.name.split("-")[-2] for f in log_files(copy.log_path)}
    assert len(pids) >= 1 and all(
        f.parent.name.startswith("date=") for f in log_files(copy.log_path)
    )


def test_metrics_and_a_full_log_queue(example: ExampleRepo, tmp_path: Path) -> None:
    copy = example.copy(tmp_path)
    copy.configure(copy.redis_url, feature_log="{path: data/feature_log, queue_size: 3}")
    known = copy.pairs(2)
    with ServiceProcess(copy.repo, copy.model) as server:
        for _ in range(3):
            body = {
                "entities": {
                    "user_id": known["user_id"] + [1, 2],
                    "merchant_id": known["merchant_id"] + [3, 4],
                }
            }
            assert server.post("/predict", body).status_code == 200  # 4 rows: never fit, dropped
        assert (
            server.post("/predict", {"entities": {"user_id": [1], "merchant_id": [2]}}).status_code
            == 200
        )
        assert server.metric("featurestore_feature_log_dropped_rows_total") == 12
        assert server.metric("featurestore_predictions_total") == 13
        assert (
            server.metric(
                "featurestore_feature_status_total", view="user_profile", status="NOT_FOUND"
            )
            == 7
        )
        assert (
            server.metric("featurestore_http_request_duration_seconds_count", endpoint="/predict")
            == 4
        )
        assert (
            server.metric("featurestore_online_read_duration_seconds_count", endpoint="/predict")
            == 4
        )
        assert (
            server.metric("featurestore_http_requests_total", endpoint="/predict", status="200")
            == 4
        )
        assert "featurestore_feature_log_queue_rows" in server.client.get("/metrics").text
        assert "feature log queue full" in server.log()
    assert read_log(copy.log_path).num_rows == 1
