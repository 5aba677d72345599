"""The consistency report on a log where every row's class is known (tests/reports/class_repo.py):
each class of the decision table, ttl boundaries, late corrections under as_of event and
created, the stale lag; and the rules for aggregated and transformed features on arrays."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from class_repo import COLUMNS, EXPECTED, FEATURES, STALE_LAG, build

from featurestore import FeatureStore
from featurestore.reports import CLASSES, Level, Window, consistency_report
from featurestore.reports.classes import (
    MATCHED,
    NO_TIME,
    RowTimes,
    classify,
    classify_by_inputs,
)
from featurestore.reports.output import to_json_text


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("classes"))


def _users_by_class(report, ref: str) -> dict[str, set[int]]:  # type: ignore[no-untyped-def]
    feature = next(f for f in report.features if f.ref == ref)
    return {c.name: {e["keys"]["user_id"] for e in c.examples} for c in feature.classes}


@pytest.mark.parametrize("as_of", ["event", "created"])
def test_every_row_gets_the_class_it_was_built_for(repo: Path, as_of: str) -> None:
    expected = dict(EXPECTED)
    if as_of == "created":
        expected[3] = None  # the correction was made after T0: invisible to the replay
    report = consistency_report(FeatureStore(repo), as_of=as_of, examples=10)
    assert [g.as_of for g in report.groups] == [as_of]
    assert [f.ref for f in report.features] == FEATURES
    wanted: dict[str, set[int]] = {}
    for user, name in expected.items():
        if name is not None:
            wanted.setdefault(name, set()).add(user)
    for ref in FEATURES:
        assert _users_by_class(report, ref) == wanted, ref
        feature = next(f for f in report.features if f.ref == ref)
        mismatched = sum(len(users) for users in wanted.values())
        assert feature.compared == len(EXPECTED)
        assert feature.matched == len(EXPECTED) - mismatched
        assert (
            feature.matched + feature.offline_null + feature.online_null + feature.mismatch
            == feature.compared
        )
        assert [c.name for c in feature.classes] == [c for c in CLASSES if c in wanted]
    assert report.score == pytest.approx(1 - sum(map(len, wanted.values())) / len(EXPECTED))
    assert report.level is Level.ALERT  # online-newer and value-differs always alert


def test_counts_lag_hours_examples_and_json(repo: Path) -> None:
    report = consistency_report(FeatureStore(repo))  # /get-online-features rows: as_of event
    assert report.groups[0].as_of == "event" and report.rows == len(EXPECTED)
    x = report.features[0]
    # users 10 (NOT_FOUND, no row offline) and 11 (NULL_VALUE, null offline) and 13 (outside
    # the ttl on both sides) are both null; 12 sits exactly at t - ttl: a value on both sides
    assert x.both_null == 3
    assert x.online_null == 2  # 5 (missing-online) and 7 (logged OUTSIDE_MAX_AGE)
    assert x.offline_null == 2  # 8 (deleted offline) and 9 (PRESENT, older than the ttl)
    stale = next(c for c in x.classes if c.name == "stale-online")
    assert stale.lag_median_s == stale.lag_p95_s == STALE_LAG.total_seconds()
    example = stale.examples[0]
    assert example["keys"] == {"user_id": 2}
    assert example["served"]["value"] == 2.5 and example["offline"]["value"] == 2.75
    assert example["served"]["event_ts"] < example["offline"]["event_ts"]
    (hour,) = x.hourly
    assert (hour.compared, hour.matched) == (x.compared, x.matched)
    assert hour.classes["ttl-boundary"] == 2
    assert x.smape is not None and x.diff_quantiles["p50"] == pytest.approx(0.125)
    assert report.features[2].smape is None  # strings: no numeric summary
    data = json.loads(to_json_text(report))
    assert data["classes"]["ttl-boundary"] == 2 * len(COLUMNS)
    assert data["features"][0]["classes"][1]["lag_median_s"] == STALE_LAG.total_seconds()
    assert data["level"] == "alert" and data["hourly"][0]["compared"] == 3 * len(EXPECTED)


def test_the_window_and_exclusions_select_what_is_compared(repo: Path) -> None:
    from featurestore.errors import ReportError

    store = FeatureStore(repo)
    with pytest.raises(ReportError, match="has no rows from 2025-01-11"):
        consistency_report(store, Window(since=datetime(2025, 1, 11)))


# --- the rules on arrays: plain, aggregated, transformed ---------------------------------

H = 3_600_000_000


def _times(**columns: list[int]) -> RowTimes:
    n = len(next(iter(columns.values())))
    default = {"status": [0] * n, "served_created": [NO_TIME] * n}
    default["offline_created"] = [NO_TIME] * n
    merged = {**default, **columns}
    return RowTimes(
        **{k: np.array(v, np.int64 if k != "status" else np.int8) for k, v in merged.items()}
    )  # type: ignore[arg-type]


def test_aggregated_features_use_the_covered_time_as_event_time() -> None:
    t = 10 * H
    # covered ends: 7 h (stale by 3 h), exactly t (same time: the values differ -> a bug),
    # 11 h (after the request: leakage); the offline side covers everything before t
    times = _times(
        request=[t, t, t],
        served_event=[7 * H, t, 11 * H],
        offline_event=[NO_TIME] * 3,
    ).as_aggregated()
    codes = classify(np.array([True, True, True]), times, ttl_us=None)
    assert [CLASSES[c] for c in codes] == ["stale-online", "value-differs", "online-newer"]
    assert (times.offline_event - times.served_event)[0] == 3 * H  # the lag reported


def test_transformed_features_take_their_inputs_first_class() -> None:
    stale, missing = CLASSES.index("stale-online"), CLASSES.index("missing-online")
    a = np.array([MATCHED, missing, MATCHED, stale], np.int8)
    b = np.array([MATCHED, stale, MATCHED, MATCHED], np.int8)
    mismatch = np.array([False, True, True, True])
    codes = classify_by_inputs(mismatch, [a, b])
    assert codes.tolist() == [MATCHED, stale, CLASSES.index("value-differs"), stale]
