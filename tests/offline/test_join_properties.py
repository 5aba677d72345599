"""The DuckDB point-in-time join equals the brute-force reference on random messy data.

Every edge DESIGN.md "Semantics" decides is drawn by tests/strategies.py: ties on event
time, created time and complete ties (later file, then later row, wins), missing created
times, nulls and NaN, null keys and event times (skipped), entity times at ``event_ts`` and
at ``t - ttl``, before any data, unknown keys, several views of different entities and
ttls (none, zero, minutes), both ``as_of`` modes, duplicates and the caller's row order.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings

from featurestore.types import dtype_by_name, to_pandas
from tests.reference import point_in_time, same_value
from tests.strategies import Scenario, build_repo, entity_table, scenarios

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(scenario: Scenario, as_pandas: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = build_repo(scenario, Path(tmp))
        refs = [f"{c.ref.name}:{f}" for c in scenario.views for f in c.ref.features]
        entities = entity_table(scenario.entity_rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped null rows: counted, tested elsewhere
            job = store.get_historical_features(
                to_pandas(entities) if as_pandas else entities,
                refs,
                full_feature_names=scenario.full_feature_names,
                as_of=scenario.as_of,
                with_timestamps=scenario.with_timestamps,
            )
            got = job.to_arrow()
    expected = point_in_time(
        scenario.entity_rows,
        [c.ref for c in scenario.views],
        as_of=scenario.as_of,
        full_feature_names=scenario.full_feature_names,
        with_timestamps=scenario.with_timestamps,
    )
    assert got.num_rows == len(expected)
    assert got.column_names[: entities.num_columns] == entities.column_names
    for case in scenario.views:
        for feature, dtype in case.dtypes.items():
            name = f"{case.ref.name}__{feature}" if scenario.full_feature_names else feature
            assert got.schema.field(name).type == dtype_by_name(dtype).to_arrow(), name
        if scenario.with_timestamps:
            for name in (f"{case.ref.name}__event_ts", f"{case.ref.name}__created_ts"):
                assert got.schema.field(name).type == pa.timestamp("us", tz="UTC"), name
    rows = got.to_pylist()
    for i, (g, e) in enumerate(zip(rows, expected, strict=True)):
        assert g.keys() == e.keys()
        for column, value in e.items():
            assert same_value(g[column], value), (i, column, g[column], value, e)


@SETTINGS
@given(scenarios())
def test_join_matches_reference_arrow_input(scenario: Scenario) -> None:
    _check(scenario, as_pandas=False)


@settings(SETTINGS, max_examples=20)
@given(scenarios())
def test_join_matches_reference_pandas_input(scenario: Scenario) -> None:
    _check(scenario, as_pandas=True)


def test_reference_agrees_on_a_hand_worked_example(tmp_path: Path) -> None:
    """A sanity anchor for the reference itself, worked out by hand."""
    from datetime import timedelta

    from tests.reference import RefView, SourceRow
    from tests.strategies import minute

    view = RefView(
        name="v",
        join_keys=["user_id"],
        ttl=timedelta(minutes=2),
        features=["x"],
        files=[
            [
                SourceRow({"user_id": 1}, minute(1), minute(5), {"x": 10}),
                SourceRow({"user_id": 1}, minute(1), minute(3), {"x": 11}),
                SourceRow({"user_id": 1}, minute(3), None, {"x": 12}),
            ]
        ],
    )
    rows = [{"user_id": 1, "event_timestamp": minute(t)} for t in (0, 1, 2, 3, 5, 6)]
    got = [r["x"] for r in point_in_time(rows, [view])]
    # t=0 before data; t=1 and 2: event 1, created 5 beats created 3; t=3 and 5: event 3
    # (5 - 2 = 3 is inside the window); t=6: nothing within 2 minutes.
    assert got == [None, 10, 10, 12, 12, None]
    created = [r["x"] for r in point_in_time(rows, [view], as_of="created")]
    # as_of="created": at t=1 and 2 nothing was known yet (created 3 and 5); at t=3 the
    # row created at 3; at t=5 the event-3 row (no created time counts as known).
    assert created == [None, None, None, 12, 12, None]
