"""The performance report on logged predictions whose labels are known: matched by request id
(and keys) or by keys and time, split by day, the figures equal to a direct computation."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from class_repo import T0, build, served_request, write_log

from featurestore import FeatureStore
from featurestore.errors import ReportError
from featurestore.feature_log import PREDICT, log_table
from featurestore.reports import Level, Thresholds, performance_report
from featurestore.reports.performance import Slice, _judge
from featurestore.reports.stats import auc, log_loss

USERS = [1, 2, 3, 4, 6, 8, 11, 12]
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("performance")
    repo = build(root)
    shutil.rmtree(repo / "data" / "feature_log")
    store = FeatureStore(repo)
    requests = [
        served_request(
            store,
            USERS,
            now=now,
            request_id=rid,
            endpoint=PREDICT,
            service="svc",
            model="m",
            model_fingerprint=store.state.service_record("svc").fingerprint,
            model_sha256="b" * 64,
            predictions=list(np.linspace(0.05, 0.95, len(USERS)) ** power),
        )
        for rid, now, power in (("a", T0, 1.0), ("b", T0 + DAY, 2.0))
    ]
    store.close()
    for request in requests:
        write_log(repo, log_table([request]), request.request_id)
    return repo


LABELS = {"a": [0, 0, 1, 0, 1, 1, 0, 1], "b": [1, 0, 0, 0, 1, 0, 1, 1]}


def _expected(request_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    y = np.concatenate([LABELS[r] for r in request_ids]).astype(float)
    p = np.concatenate(
        [np.linspace(0.05, 0.95, len(USERS)) ** (1.0 if r == "a" else 2.0) for r in request_ids]
    )
    return y, p


def test_matched_by_request_id_and_keys(repo: Path) -> None:
    labels = pd.DataFrame(
        {
            "request_id": ["a"] * len(USERS) + ["b"] * len(USERS) + ["zzz"],
            "user_id": USERS * 2 + [1],
            "is_fraud": LABELS["a"] + LABELS["b"] + [1],
        }
    )
    report = performance_report(FeatureStore(repo).config, labels, label="is_fraud")
    y, p = _expected(["a", "b"])
    assert report.matched_by == "by request_id + user_id"
    assert report.labels_rows == 2 * len(USERS) + 1 and report.unmatched == 1
    assert report.overall.rows == 2 * len(USERS)
    assert report.overall.auc == pytest.approx(auc(y, p))
    assert report.overall.log_loss == pytest.approx(log_loss(y, p))
    assert report.overall.positives == int(y.sum())
    assert [d.name for d in report.days] == [f"{T0:%Y-%m-%d}", f"{T0 + DAY:%Y-%m-%d}"]
    day_a = report.days[0]
    assert day_a.auc == pytest.approx(auc(*_expected(["a"])))
    assert sum(b.count for b in report.calibration) == 2 * len(USERS)
    assert report.level is Level.OK  # no validation figures: nothing to judge against
    assert report.model == "m (sha256 bbbbbbbbbbbb)"


def test_matched_by_keys_and_the_nearest_request_time(repo: Path) -> None:
    near_b = T0 + DAY - timedelta(minutes=20)  # nearer b than a, within an hour of b
    labels = pd.DataFrame(
        {
            "user_id": [*USERS, 999],
            "event_timestamp": [near_b] * len(USERS) + [near_b],
            "label": LABELS["b"] + [0],
        }
    )
    report = performance_report(FeatureStore(repo).config, labels, label="label")
    assert report.matched_by.startswith("by user_id and the request time nearest")
    assert report.unmatched == 1 and report.overall.rows == len(USERS)
    assert report.overall.auc == pytest.approx(auc(*_expected(["b"])))
    with pytest.raises(ReportError, match="none of the 9 labels"):  # 20 minutes away: none
        performance_report(
            FeatureStore(repo).config, labels, label="label", match_within=timedelta(minutes=10)
        )


def test_judged_against_the_validation_figures() -> None:
    thresholds = Thresholds.from_config()
    served = Slice("overall", 1000, 50, 0.05, auc=0.80, log_loss=0.12, ece=0.01)
    level, reasons = _judge(served, {"valid_auc": 0.86, "valid_log_loss": 0.1}, thresholds)
    assert level is Level.ALERT  # AUC dropped by 0.06 >= 0.05
    assert any("auc_drop 0.060" in r for r in reasons)
    assert any("log_loss_rise 0.200" in r for r in reasons)  # 20% worse: a warning
    fine = Slice("overall", 1000, 50, 0.05, auc=0.855, log_loss=0.101, ece=0.01)
    assert _judge(fine, {"valid_auc": 0.86, "valid_log_loss": 0.1}, thresholds)[0] is Level.OK
    few = Slice("overall", 10, 5, 0.5, auc=0.1, log_loss=3.0, ece=0.4)
    assert _judge(few, {"valid_auc": 0.9}, thresholds)[0] is Level.OK  # < min_rows
    # one class only: AUC is undefined, and the report says the AUC check did not run
    # (it was skipped silently: NaN compares False with every bound)
    negatives = Slice("overall", 1000, 0, 0.02, auc=float("nan"), log_loss=0.05, ece=0.01)
    level, reasons = _judge(negatives, {"valid_auc": 0.86}, thresholds)
    assert level is Level.OK and reasons == [
        "AUC undefined: the 1,000 labeled predictions are all of one class (0 positive): "
        "auc_drop not judged"
    ]


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        ([-1, -1, 1, -1, 1, 1, -1, 1], "-1"),  # the -1/+1 convention: no positive counted
        ([0, 0, 2, 0, 1, 3, 0, 1], "2, 3"),  # classes or counts, not a binary label
        ([0.0, 0.2, 0.9, 0, 1, 1, 0, 1], "0.2, 0.9"),  # scores, not labels
    ],
)
def test_labels_other_than_0_and_1_are_refused_naming_them(
    repo: Path, values: list[float], shown: str
) -> None:
    """AUC, log loss and the base rate are defined for 0/1 labels only: other values would
    give figures that look plausible (or NaN, which judges as OK) instead of an error."""
    labels = pd.DataFrame({"request_id": ["a"] * len(USERS), "user_id": USERS, "y": values})
    with pytest.raises(ReportError, match=rf"label column 'y' .*0 and 1.*{shown}"):
        performance_report(FeatureStore(repo).config, labels, label="y")
    for given in ([bool(v) for v in LABELS["a"]], [str(v) for v in LABELS["a"]]):
        report = performance_report(FeatureStore(repo).config, labels.assign(y=given), label="y")
        assert report.overall.positives == sum(LABELS["a"])


def test_a_request_id_label_for_a_request_that_scored_several_entities_is_refused(
    repo: Path,
) -> None:
    """A label carrying only ``request_id`` cannot say which of the request's 8 scored
    entities it is for: it used to be matched to one of them, picked silently (any one
    would do for the join), so AUC and log loss were computed on arbitrary predictions."""
    labels = pd.DataFrame({"request_id": ["a", "b"], "is_fraud": [1, 0]})
    with pytest.raises(ReportError, match=r"request_id 'a'.* 8 logged predictions.*user_id"):
        performance_report(FeatureStore(repo).config, labels, label="is_fraud")


def test_labels_keys_of_another_type_than_the_logs_are_refused_naming_the_column(
    repo: Path, tmp_path: Path
) -> None:
    """Join keys are typed (1 and "1" are different keys): labels whose ``user_id`` holds
    strings used to match the log's integer keys through DuckDB's implicit cast, "01"
    included. A CSV's key columns are read as the log types them."""
    given = {"request_id": ["a"] * len(USERS), "is_fraud": LABELS["a"]}
    for keys in ([str(u) for u in USERS], [f"0{u}" for u in USERS]):
        labels = pd.DataFrame({**given, "user_id": keys})
        with pytest.raises(ReportError, match=r"column 'user_id' holds strings.*integer key"):
            performance_report(FeatureStore(repo).config, labels, label="is_fraud")
    path = tmp_path / "labels.csv"
    pd.DataFrame({**given, "user_id": USERS}).to_csv(path, index=False)
    report = performance_report(FeatureStore(repo).config, path, label="is_fraud")
    assert report.overall.rows == len(USERS)


def test_label_times_follow_the_entity_time_rule_naming_a_bad_row(repo: Path) -> None:
    """Labels' ``event_timestamp`` is read as entity rows' is (``offline/entities.py``):
    a string that is no time used to be a pandas traceback, and epoch numbers were read as
    nanoseconds (1970, matching nothing) instead of being refused."""
    given = {"user_id": USERS[:2], "is_fraud": [1, 0]}
    bad = pd.DataFrame({**given, "event_timestamp": [T0.isoformat(), "not-a-time"]})
    with pytest.raises(ReportError, match=r"row 1 holds 'not-a-time', which is not a timestamp"):
        performance_report(FeatureStore(repo).config, bad, label="is_fraud")
    epoch = pd.DataFrame({**given, "event_timestamp": [int(T0.timestamp())] * 2})
    with pytest.raises(ReportError, match=r"'event_timestamp' has type int64; give timestamps"):
        performance_report(FeatureStore(repo).config, epoch, label="is_fraud")
    naive = pd.DataFrame({**given, "event_timestamp": [T0.replace(tzinfo=None).isoformat()] * 2})
    assert performance_report(FeatureStore(repo).config, naive, label="is_fraud").overall.rows == 2
