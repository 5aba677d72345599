"""``read_latest`` (materialization's read) equals the reference's latest row per key.

Same messy views as the join's property tests; windows with and without a start, with and
without a created-after bound for late rows. The tie-break is the join's: a key's latest
row here is what a training row at the same time gets.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.offline.plan import plan_latest
from featurestore.types import dtype_by_name
from tests.reference import latest, same_value
from tests.strategies import Scenario, build_repo, minute, view_cases


@st.composite
def cases(draw: st.DrawFn) -> tuple[Scenario, int | None, int, int | None]:
    view = draw(view_cases("v0", draw(st.sampled_from(["user", "merchant", "pair"]))))
    start = draw(st.none() | st.integers(-1, 12))
    end = draw(st.integers(-1, 14))
    created_after = draw(st.none() | st.integers(-1, 20))
    return Scenario([view], [], "event", False), start, end, created_after


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_read_latest_matches_reference(case: tuple[Scenario, int | None, int, int | None]) -> None:
    scenario, start, end, created_after = case
    view_case = scenario.views[0]
    window = {
        "end": minute(end),
        "start": None if start is None else minute(start),
        "created_after": None if created_after is None else minute(created_after),
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = build_repo(scenario, Path(tmp))
        state = store.state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = plan_latest(
                state.view("v0"), state.key_dtypes("v0"), repo_path=store.repo_path, **window
            )
            batches = list(store.offline_engine().read_latest(plan, batch_rows=3))
    keys = view_case.ref.join_keys
    expected = latest(view_case.ref, **window)
    utc = pa.timestamp("us", tz="UTC")
    for batch in batches:
        for k in keys:
            assert batch.schema.field(k).type == state.key_dtypes("v0")[k].to_arrow()
        for f, d in view_case.dtypes.items():
            assert batch.schema.field(f).type == dtype_by_name(d).to_arrow()
        assert batch.schema.field(EVENT_TS).type == utc
        assert batch.schema.field(CREATED_TS).type == utc
    rows = [r for b in batches for r in b.to_pylist()]
    got = {tuple(r[k] for k in keys): r for r in rows}
    assert len(got) == len(rows), "one row per key"
    assert got.keys() == expected.keys()
    for key, row in expected.items():
        assert got[key][EVENT_TS] == row.event_ts
        assert got[key][CREATED_TS] == row.created_ts
        for feature in view_case.ref.features:
            assert same_value(got[key][feature], row.values[feature]), (key, feature)
