"""The consistency report compares transformed features by value and classes them by their
inputs, on a log the real service wrote (``featurestore serve`` over HTTP, real Redis).

tests/transform_repo.py's repo: a model bound to ``svc`` (``stats:cnt`` and the on-demand view
``scored``: ratio = amount / avg, r32 = avg * 3; ``stats:avg`` is an input the service does not
ask for, logged beside it). Fresh rows are pushed to both paths, then ``/predict`` and
``/get-online-features`` (logged too) serve window A; a newer ``avg`` of user 1 is pushed offline only (online now lags: stale), and
``/predict`` serves window B. Proven: window A is 100% consistent with the transformed
features compared; in window B user 1's transformed values are stale-online (their input's
class and lag), not value-differs; a served value edited in the log (inputs equal) is
value-differs; a log without the request field is a note, not a crash.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore, models
from featurestore.feature_log import log_files, read_log
from featurestore.reports import Level, Window, consistency_report
from featurestore.reports.classes import FeatureKind
from tests.serving.service_process import ServiceProcess
from tests.transform_repo import T0, write_repo

pytestmark = pytest.mark.xdist_group("serving")

USERS = [1, 2, 3, 99, 1, 2]  # 3: outside the ttl (its inputs null); 99: not found
AMOUNTS = [2.5, 0.7, 1.0, 3.0, 0.0, 9.5]
TRANSFORMED = ("scored__ratio", "scored__r32")


@dataclass
class Served:
    repo: Path
    model: Path
    a: Window
    b: Window
    fresh_at: datetime  # the event time of the rows online holds
    newer_at: datetime  # the event time of user 1's row pushed offline only


def _predict(server: ServiceProcess, requests: int) -> None:
    for _ in range(requests):
        answer = server.post("/predict", {"entities": {"user_id": USERS, "amount": AMOUNTS}})
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, redis_session_factory: Any
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("transformed_consistency")
    repo = root / "repo"
    repo.mkdir()
    store = write_repo(repo, online=redis_session_factory().url)
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
    fresh_at = now - timedelta(minutes=10)
    fresh = pd.DataFrame(
        {"user_id": [1, 2], "ts": [fresh_at] * 2, "avg": [4.0, 0.3], "cnt": [7, 8],
         "tag": ["x", "y"]}
    )  # fmt: skip
    store.push("stats_push", fresh, to="online_and_offline")
    config = repo / "featurestore.yaml"
    config.write_text(
        config.read_text().replace(
            "feature_log: {path: data/feature_log}",
            "feature_log: {path: data/feature_log, include_online_features: true}",
        )
    )
    with ServiceProcess(repo, root / "model") as server:
        a_since = datetime.now(UTC)
        _predict(server, 3)
        body = {"feature_service": "svc", "entities": {"user_id": USERS, "amount": AMOUNTS}}
        answer = server.post("/get-online-features", body)  # replayed with as_of="event"
        assert answer.status_code == 200, answer.text
        time.sleep(0.01)
        newer_at = datetime.now(UTC)
        newer = pd.DataFrame(
            {"user_id": [1], "ts": [newer_at], "avg": [5.0], "cnt": [7], "tag": ["x"]}
        )
        # after window A's requests (replayed with as_of="event" too, it must not see it);
        # online keeps the older row: it lags by newer_at - fresh_at
        store.push("stats_push", newer, to="offline")
        time.sleep(0.01)
        b_since = datetime.now(UTC)
        _predict(server, 2)
    store.close()
    yield Served(
        repo, root / "model", Window(a_since, newer_at), Window(b_since), fresh_at, newer_at
    )


def _feature(report: Any, column: str) -> Any:
    return next(f for f in report.features if f.column == column)


def test_transformed_features_served_are_compared_and_all_match(served: Served) -> None:
    report = consistency_report(FeatureStore(served.repo), served.a, model=served.model)
    rows = 4 * len(USERS)  # three /predict requests and one /get-online-features
    assert report.rows == rows
    assert sorted((g.as_of, g.rows) for g in report.groups) == [
        ("created", 3 * len(USERS)),
        ("event", len(USERS)),
    ]
    assert report.score == 1.0 and report.level is Level.OK, report.notes
    assert not any("scored" in note for note in report.notes), report.notes
    assert not any("served no logged row" in note for note in report.notes), report.notes
    for column in TRANSFORMED:
        feature = _feature(report, column)
        assert feature.kind is FeatureKind.TRANSFORMED
        assert feature.compared == rows and feature.matched == feature.compared
    # user 3 (outside the ttl) and 99 (not found) have null inputs: null on both sides
    assert _feature(report, "scored__ratio").both_null == 4 * 2
    assert report.to_json()["features"][0]["kind"] in {"plain", "transformed"}


def test_a_stale_input_makes_its_transformed_values_stale_online(served: Served) -> None:
    report = consistency_report(
        FeatureStore(served.repo), served.b, model=served.model, examples=100
    )
    ones = 2 * USERS.count(1)  # user 1's rows in window B
    stale_input = _feature(report, "stats__avg")  # the hidden input, compared as itself
    assert [(c.name, c.count) for c in stale_input.classes] == [("stale-online", ones)]
    assert _feature(report, "stats__cnt").mismatch == 0  # same value, older row: a match
    # ratio = amount / avg: user 1's amount of 0.0 gives 0.0 on both sides (a match)
    for column, mismatched in (("scored__ratio", ones // 2), ("scored__r32", ones)):
        feature = _feature(report, column)
        assert [(c.name, c.count) for c in feature.classes] == [("stale-online", mismatched)]
        (summary,) = feature.classes
        lag = (served.newer_at - served.fresh_at).total_seconds()
        assert summary.lag_median_s == pytest.approx(lag, abs=1e-6) == summary.lag_p95_s
        assert summary.served_up_to is not None
        assert abs(summary.served_up_to - served.fresh_at) < timedelta(milliseconds=1)
        for example in summary.examples:
            assert example["classed_by"] == "stats__avg"
            assert example["keys"] == {"user_id": 1}
            assert example["request"]["amount"] in AMOUNTS
            assert example["inputs"]["stats__avg"]["served"] == 4.0
            assert example["inputs"]["stats__avg"]["offline"] == 5.0
            assert example["inputs"]["stats__avg"]["class"] == "stale-online"
            assert example["inputs"]["stats__cnt"]["class"] is None
    ratio = _feature(report, "scored__ratio").classes[0].examples
    assert [(e["served"]["value"], e["offline"]["value"]) for e in ratio] == [
        (2.5 / 4, 2.5 / 5)
    ] * 2
    assert report.level is Level.WARN or report.level is Level.ALERT
    assert report.class_counts()["value-differs"] == 0


def test_a_transformed_value_that_differs_with_equal_inputs_is_value_differs(
    served: Served, tmp_path: Path
) -> None:
    copy = _copy(served, tmp_path)
    file = next(f for f in log_files(copy / "data" / "feature_log") if _first_row(f, served.a))
    row = _first_row(file, served.a)
    table = pq.read_table(file)
    ratio = table["scored__ratio"].to_pylist()
    ratio[row] += 1.0  # user 2's value, as no correct system writes it
    table = table.set_column(table.schema.get_field_index("scored__ratio"), "scored__ratio",
                             pa.array(ratio, pa.float64()))  # fmt: skip
    pq.write_table(table, file)
    report = consistency_report(FeatureStore(copy), served.a, model=served.model)
    feature = _feature(report, "scored__ratio")
    assert [(c.name, c.count) for c in feature.classes] == [("value-differs", 1)]
    (example,) = feature.classes[0].examples
    assert example["keys"] == {"user_id": 2} and example["classed_by"] is None
    assert report.level is Level.ALERT  # value-differs is always an alert
    assert _feature(report, "scored__r32").mismatch == 0


def test_a_log_without_the_request_field_is_a_note_not_a_crash(
    served: Served, tmp_path: Path
) -> None:
    copy = _copy(served, tmp_path)
    for file in log_files(copy / "data" / "feature_log"):  # as logs before request fields
        pq.write_table(pq.read_table(file).drop_columns(["amount"]), file)
    report = consistency_report(FeatureStore(copy), served.a, model=served.model)
    assert {f.column for f in report.features} == {"stats__cnt", "stats__avg"}
    for column in TRANSFORMED:
        (note,) = [n for n in report.notes if n.startswith(column)]
        assert "not compared" in note and "request field 'amount'" in note, note
    assert report.score == 1.0


def _copy(served: Served, tmp_path: Path) -> Path:
    """The repo (definitions, data, registry, log) in ``tmp_path``: edits stay there."""
    copy = tmp_path / "repo"
    shutil.copytree(served.repo, copy)
    return copy


def _first_row(file: Path, window: Window) -> int | None:
    """The index in ``file`` of the first row of user 2 in ``window`` (None: none there)."""
    table = pq.read_table(file, columns=["request_ts", "user_id"])
    for i, (ts, user) in enumerate(zip(*table.to_pydict().values(), strict=True)):
        if user == 2 and window.since <= ts < window.until:  # type: ignore[operator]
            return i
    return None


def test_the_log_holds_what_the_replay_reads(served: Served) -> None:
    """The service logged the request field and the hidden input the replay needs."""
    log = read_log(served.repo / "data" / "feature_log", since=served.a.since, until=served.a.until)
    assert log["amount"].to_pylist() == AMOUNTS * 4  # /predict and /get-online-features
    assert log["stats__avg__status"].null_count == 0


def test_rows_from_old_files_without_the_request_field_are_left_out_with_a_note(
    served: Served, tmp_path: Path
) -> None:
    copy = _copy(served, tmp_path)
    folder = copy / "data" / "feature_log"
    log = read_log(folder, since=served.a.since, until=served.a.until)
    first = log["request_id"][0].as_py()  # the window's first request: as an old file holds it
    for file in log_files(folder):
        table = pq.read_table(file)
        old = pc.equal(table["request_id"], first)
        if pc.any(old).as_py():
            pq.write_table(table.filter(pc.invert(old)), file)
            old_file = file.with_name("part-00000000T000000000000-old.parquet")
            pq.write_table(table.filter(old).drop_columns(["amount"]), old_file)
    report = consistency_report(FeatureStore(copy), served.a, model=served.model)
    assert report.score == 1.0, report.notes
    for column in TRANSFORMED:
        assert _feature(report, column).compared == 3 * len(USERS)  # the newer requests
        (note,) = [n for n in report.notes if n.startswith(column)]
        assert f"{len(USERS)} logged rows not compared" in note and "'amount'" in note, note
    assert _feature(report, "stats__cnt").compared == 4 * len(USERS)  # not a transformed one


def test_a_model_that_served_no_logged_row_gets_a_note(served: Served) -> None:
    """Defect: a --model whose sha256 the log never saw (another model, a retrain) applied its
    as_of to nothing, silently."""
    import dataclasses

    from featurestore import models

    artifact = models.load(served.model)
    other = dataclasses.replace(
        artifact, metadata=dataclasses.replace(artifact.metadata, model_sha256="0" * 64)
    )
    report = consistency_report(FeatureStore(served.repo), served.a, model=other)
    assert any(
        "the model given (sha256 000000000000) served no logged row" in note
        for note in report.notes
    ), report.notes
