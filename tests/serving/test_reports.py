"""The reports on a log the real service wrote: ``featurestore serve`` answers /predict over
HTTP, then the consistency report finds every value equal to its replay (and, serving while
the last hours are not materialized, stale-online values with the lag the data says), the
skew report finds nothing against the training set of those very requests, and the
performance report measures the predictions against labels."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
from service_process import ExampleRepo, ServiceProcess

from featurestore import FeatureStore, models
from featurestore.feature_log import read_log
from featurestore.reports import Level, consistency_report, performance_report, skew_report
from featurestore.reports.stats import auc

pytestmark = pytest.mark.xdist_group("serving")


def _serve(copy: ExampleRepo, requests: int = 3, size: int = 20) -> list[dict]:
    answers = []
    with ServiceProcess(copy.repo, copy.model) as server:
        for seed in range(requests):
            entities = copy.pairs(size, seed=seed)
            answer = server.post("/predict", {"entities": entities})
            assert answer.status_code == 200, answer.text
            answers.append({**answer.json(), "entities": entities})
    return answers


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurestore.cli", *args], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def served(
    example: ExampleRepo, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ExampleRepo, list[dict]]:
    copy = example.copy(tmp_path_factory.mktemp("reports"))  # same Redis, its own log
    copy.configure(copy.redis_url, reports="{thresholds: {min_rows: 10}}")
    return copy, _serve(copy)


def test_consistency_of_served_predictions_is_exact(
    served: tuple[ExampleRepo, list[dict]], tmp_path: Path
) -> None:
    copy, _ = served
    artifact = models.load(copy.model)
    report = consistency_report(FeatureStore(copy.repo), model=copy.model)
    assert [(g.as_of, g.rows) for g in report.groups] == [(artifact.metadata.as_of, 60)]
    assert len(report.features) == len(artifact.features)
    assert report.score == 1.0 and report.level is Level.OK, [f.reasons for f in report.features]
    assert all(f.compared == 60 and not f.classes for f in report.features)
    out = tmp_path / "consistency.json"
    result = _cli(
        "consistency-report", "--repo", str(copy.repo), "--model", str(copy.model), "--out",
        str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "consistency score 100.0000%" in result.stdout
    assert json.loads(out.read_text())["score"] == 1.0


def test_skew_against_the_training_set_of_the_served_requests_is_nil(
    served: tuple[ExampleRepo, list[dict]], tmp_path: Path
) -> None:
    copy, _ = served
    log = read_log(copy.log_path).to_pandas()
    entities = log[["user_id", "merchant_id"]].assign(event_timestamp=log["request_ts"])
    train = tmp_path / "train.parquet"
    FeatureStore(copy.repo).get_historical_features(
        entities, feature_service="fraud_v1", as_of="created"
    ).to_parquet(train)
    report = skew_report(FeatureStore(copy.repo).config, train)
    assert report.served_rows == 60 and not report.schema
    assert all(f.psi == 0 and f.js == 0 for f in report.features)
    assert report.level is Level.OK
    result = _cli("skew-report", "--repo", str(copy.repo), "--training-set", str(train))
    assert result.returncode == 0, result.stderr
    assert "no feature flagged" in result.stdout


def test_performance_of_served_predictions(
    served: tuple[ExampleRepo, list[dict]], tmp_path: Path
) -> None:
    copy, answers = served
    rng = np.random.default_rng(0)
    rows = [
        {"request_id": a["request_id"], "user_id": u, "merchant_id": m, "prediction": p}
        for a in answers
        for u, m, p in zip(a["entities"]["user_id"], a["entities"]["merchant_id"], a["predictions"], strict=True)
    ]  # fmt: skip
    labels = pd.DataFrame(rows)
    labels["is_fraud"] = (rng.random(len(labels)) < labels["prediction"] * 5).astype(int)
    labels.drop(columns="prediction").to_parquet(tmp_path / "labels.parquet")
    report = performance_report(
        FeatureStore(copy.repo).config, tmp_path / "labels.parquet", model=copy.model
    )
    assert report.overall.rows == 60 and report.unmatched == 0
    assert report.overall.auc == pytest.approx(
        auc(labels["is_fraud"].to_numpy(), labels["prediction"].to_numpy())
    )
    assert set(report.validation) == {"valid_auc", "valid_log_loss", "valid_base_rate"}
    out = tmp_path / "performance.html"
    result = _cli(
        "performance-report", "--repo", str(copy.repo), "--labels", str(tmp_path / "labels.parquet"),
        "--model", str(copy.model), "--out", str(out),
    )  # fmt: skip
    assert result.returncode in (0, 3, 4), result.stderr
    assert "validation" in result.stdout and "<svg" in out.read_text()


def test_serving_before_the_last_hours_are_materialized_is_stale_online(
    example: ExampleRepo, tmp_path: Path, redis_factory
) -> None:  # type: ignore[no-untyped-def]
    copy = example.copy(tmp_path, redis_factory().url)
    cut = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    FeatureStore(copy.repo).materialize(datetime(2000, 1, 1, tzinfo=UTC), cut)
    _serve(copy, requests=2, size=30)
    report = consistency_report(FeatureStore(copy.repo), model=copy.model, examples=1000)
    stale = [(f, c) for f in report.features for c in f.classes if c.name == "stale-online"]
    assert stale and report.level is Level.ALERT
    assert {c.name for f in report.features for c in f.classes} == {"stale-online"}
    for feature, summary in stale:
        lags = []
        aggregated = feature.ref.startswith("user_activity:")  # windowed aggregations
        for example_row in summary.examples:
            served_at = datetime.fromisoformat(example_row["served"]["event_ts"])
            # an aggregated feature is classed by the request time against the covered end
            offline_at = datetime.fromisoformat(
                example_row["request_ts"] if aggregated else example_row["offline"]["event_ts"]
            )
            assert served_at <= cut < offline_at  # online stopped at the cut, the source did not
            lags.append((offline_at - served_at).total_seconds())
            if aggregated:  # its values carry the view's covered end: the materialized cut
                assert served_at == cut
        assert len(lags) == summary.count
        assert summary.lag_median_s == pytest.approx(float(np.median(lags)))
        assert summary.lag_p95_s == pytest.approx(float(np.quantile(lags, 0.95)))
    log = read_log(copy.log_path)
    assert pc.max(log["request_ts"]).as_py() > cut + timedelta(hours=6)
