"""The skew report end to end on logs written with the log's own writer: against a baseline
window of served traffic, a feature shifted in the later window is flagged and no other;
exclusions leave a feature out; thresholds come from featurestore.yaml."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from class_repo import T0, build, served_request, write_log

from featurestore import FeatureStore
from featurestore.feature_log import log_columns, log_table
from featurestore.reports import Level, Window, skew_report

USERS = [1, 2, 3, 4, 6, 7, 8, 11, 12]
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("skew"))


def _repo(built: Path, tmp_path: Path, reports: str) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(built, repo)
    shutil.rmtree(repo / "data" / "feature_log")
    config = repo / "featurestore.yaml"
    config.write_text(config.read_text() + f"reports: {reports}\n")
    store = FeatureStore(repo)
    for day, scale in ((0, 1.0), (1, 3.0)):  # the second day serves x three times larger
        table = log_table([served_request(store, USERS) for _ in range(30)])  # read at T0
        x = table.schema.get_field_index("stats__x")
        table = table.set_column(x, "stats__x", pc.multiply(table["stats__x"], scale))
        when = table.schema.get_field_index("request_ts")  # logged a day later, same vectors
        table = table.set_column(when, "request_ts", pc.add(table["request_ts"], day * DAY))
        write_log(repo, table, f"day{day}")
    store.close()
    return repo


def test_a_baseline_window_flags_the_shifted_feature_only(built: Path, tmp_path: Path) -> None:
    repo = _repo(built, tmp_path, "{thresholds: {min_rows: 50}}")
    config = FeatureStore(repo).config
    report = skew_report(config, window=Window(since=T0 + DAY), baseline=Window(until=T0 + DAY))
    assert report.reference_rows == report.served_rows == 30 * len(USERS)
    assert report.flagged() == ["stats:x"] and report.level is Level.ALERT
    others = [f for f in report.features if f.ref != "stats:x"]
    assert others and all(f.psi == 0 and f.level is Level.OK for f in others)
    x = next(f for f in report.features if f.ref == "stats:x")
    assert x.served_mean == pytest.approx(3 * (x.reference_mean or 0))
    same = skew_report(config, window=Window(until=T0 + DAY), baseline=Window(until=T0 + DAY))
    assert same.flagged() == [] and same.level is Level.OK


def test_excluded_features_and_configured_thresholds(built: Path, tmp_path: Path) -> None:
    repo = _repo(built, tmp_path, "{thresholds: {min_rows: 50}, exclude_features: ['stats:x']}")
    config = FeatureStore(repo).config
    report = skew_report(config, window=Window(since=T0 + DAY), baseline=Window(until=T0 + DAY))
    assert "stats:x" not in [f.ref for f in report.features] and report.level is Level.OK
    assert any("stats:x is excluded" in note for note in report.notes)
    lenient = _repo(built, tmp_path / "b", "{thresholds: {min_rows: 1000}}")
    report = skew_report(
        FeatureStore(lenient).config, window=Window(since=T0 + DAY), baseline=Window(until=T0 + DAY)
    )
    assert report.level is Level.OK  # 270 rows < min_rows: reported, not judged
    assert all("not judged" in f.reasons[0] for f in report.features)


def test_a_feature_missing_from_one_window_is_a_schema_finding(built: Path, tmp_path: Path) -> None:
    repo = _repo(built, tmp_path, "{thresholds: {min_rows: 50}}")
    day1 = next((repo / "data" / "feature_log").glob("date=*/part-day1.parquet"))
    table = pq.read_table(day1)
    table = table.drop_columns([c for c in table.column_names if c.startswith("stats__s")])
    pq.write_table(table, day1)
    report = skew_report(
        FeatureStore(repo).config, window=Window(since=T0 + DAY), baseline=Window(until=T0 + DAY)
    )
    (finding,) = report.schema
    assert finding.kind == "missing" and finding.feature == "stats:s"
    assert "not served in the window" in finding.message and report.level is Level.ALERT


def test_a_feature_whose_dtype_differs_between_the_windows_is_a_schema_finding(
    built: Path, tmp_path: Path
) -> None:
    """As against a training set, two windows that log a feature with different dtypes (an
    apply changed it in between) are a dtype finding, not a comparison: the served strings
    used to be converted to floats (a traceback when one does not parse)."""
    repo = _repo(built, tmp_path, "{thresholds: {min_rows: 50}}")
    day1 = next((repo / "data" / "feature_log").glob("date=*/part-day1.parquet"))
    table = pq.read_table(day1)
    x = table.schema.get_field_index("stats__x")
    table = table.set_column(x, "stats__x", pa.array(["abc"] * table.num_rows))
    pq.write_table(table, day1)
    report = skew_report(
        FeatureStore(repo).config, window=Window(since=T0 + DAY), baseline=Window(until=T0 + DAY)
    )
    (finding,) = report.schema
    assert finding.kind == "dtype" and finding.feature == "stats:x"
    assert "Float64 in the baseline but String in the window" in finding.message
    assert "stats:x" not in [f.ref for f in report.features] and report.level is Level.ALERT


def test_a_baseline_that_overlaps_the_window_says_so(built: Path, tmp_path: Path) -> None:
    """A baseline left open at its end (``--baseline-since`` without ``--baseline-until``)
    holds the window's own rows, which pulls every statistic towards no skew: the report
    used to say nothing about it."""
    repo = _repo(built, tmp_path, "{thresholds: {min_rows: 50}}")
    config = FeatureStore(repo).config
    report = skew_report(config, window=Window(since=T0 + DAY), baseline=Window(since=T0))
    assert any("the baseline overlaps the window" in note for note in report.notes)
    apart = skew_report(config, window=Window(since=T0 + DAY), baseline=Window(until=T0 + DAY))
    assert not any("overlaps" in note for note in apart.notes)


def test_inputs_of_a_trained_on_demand_view_are_not_extra_features(tmp_path: Path) -> None:
    """The log holds what an on-demand view read beside its outputs (``stats:avg`` for
    ``scored``, outside the service ``svc``): logged for the consistency report, never a
    feature the model lacks, so no "extra" alert (test_bad_input: a real one still is)."""
    from featurestore.feature_log import PREDICT, ServedRequest
    from featurestore.online.codec import timestamp_us
    from featurestore.online.read import read_online
    from tests.transform_repo import T0 as AT
    from tests.transform_repo import write_repo

    store = write_repo(tmp_path / "repo")
    store.apply()
    store.materialize(AT - 7 * DAY, AT + DAY)
    rows: dict[str, list[Any]] = {"user_id": [1, 2], "amount": [3.0, 4.0]}
    train = tmp_path / "train.parquet"
    entities = pa.table({**rows, "event_timestamp": [AT + DAY] * 2}).to_pandas()
    store.get_historical_features(entities, "svc").to_parquet(train)
    reader = store._online_reader()
    plan, _ = reader.plan("svc", False)
    request = ServedRequest(
        request_id="r1",
        request_us=timestamp_us(AT + DAY),
        endpoint=PREDICT,
        response=read_online(reader.store, plan, rows, AT + DAY),
        columns=log_columns(plan),
        service="svc",
    )
    assert "stats__avg" in log_table([request]).column_names  # logged, not in the service
    write_log(tmp_path / "repo", log_table([request]), "p")
    assert [s for s in skew_report(store.config, train).schema if s.kind == "extra"] == []
