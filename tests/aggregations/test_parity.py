"""The parity theorem for aggregated views, on both online stores, bit for bit.

Once everything with ``event_ts < T`` is materialized (in one run or incrementally, with
late rows between runs), ``get_online_features(now=T)`` equals ``get_historical_features``
at ``T`` for every key and aggregation: the same Arrow type and the same value, floats
compared by their IEEE bits, on values from 1e-300 to 1e300, infinities, NaN, -0.0 and
cancellation. And with no event after ``T``, the online value at any later ``now`` equals
the training set's at ``now``: values age out of their windows as ``now`` moves.
"""

from __future__ import annotations

import math
import struct
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import (
    ENTITY_KEYS,
    AggViewCase,
    agg_view_cases,
    build_agg_repo,
    minute,
    write_agg_files,
)

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
pytestmark = pytest.mark.filterwarnings("ignore::featurestore.errors.SkippedRowsWarning")


@pytest.fixture(
    params=["sqlite", "redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)]
)
def online_config(request: pytest.FixtureRequest) -> Iterator[tuple[str, Callable[[], None]]]:
    """The online_store line, and how ``open_store`` empties that store for every example:
    SQLite in the repo (a new repo each time), a throwaway redis-server, or the session's
    throwaway Redis Cluster."""
    if request.param == "sqlite":
        yield "online_store: {type: sqlite, path: data/online.db}\n", lambda: None
    elif request.param == "redis":
        import redis

        url = request.getfixturevalue("redis_server")

        def flush() -> None:
            client = redis.Redis.from_url(url)
            client.flushall()
            client.close()

        yield f"online_store: {{type: redis, url: '{url}'}}\n", flush
    else:
        url = request.getfixturevalue("cluster_url")
        cluster = request.getfixturevalue("redis_cluster")
        yield f"online_store: {{type: redis, url: '{url}', cluster: true}}\n", cluster.flush


def open_store(case: AggViewCase, path: Path, online: tuple[str, Callable[[], None]]) -> Any:
    config, flush = online
    flush()
    return build_agg_repo([case], path, config)


def bits(value: Any) -> Any:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else struct.pack("<d", value)
    return value


def key_rows(case: AggViewCase) -> list[dict[str, Any]]:
    keys = case.ref.join_keys
    seen: dict[tuple[Any, ...], None] = {}
    for rows in case.ref.files:
        for row in rows:
            if all(row.keys[k] is not None for k in keys):
                seen[tuple(row.keys[k] for k in keys)] = None
    absent = tuple(99 if k == "user_id" else "absent" for k in keys)
    return [dict(zip(keys, key, strict=True)) for key in [*seen, absent]]


def check_parity(store: Any, case: AggViewCase, now: datetime) -> None:
    view = store.state.view(case.ref.name)
    refs = [f"{view.name}:{a.name}" for a in view.aggregations]
    rows = key_rows(case)
    online = store.get_online_features(features=refs, entity_rows=rows, now=now)
    entity_df = pa.table(
        {
            **{
                k: pa.array([r[k] for r in rows], pa.int64() if k == "user_id" else pa.string())
                for k in case.ref.join_keys
            },
            "event_timestamp": pa.array([now] * len(rows), pa.timestamp("us", tz="UTC")),
        }
    )
    offline = store.get_historical_features(entity_df, refs).to_arrow()
    on = online.to_arrow()
    for agg in view.aggregations:
        assert on.schema.field(agg.name).type == offline.schema.field(agg.name).type
        got, want = on[agg.name].to_pylist(), offline[agg.name].to_pylist()
        for i, row in enumerate(rows):
            assert bits(got[i]) == bits(want[i]), (agg.name, row, now, got[i], want[i])
            status = online.statuses[agg.name][i]
            assert status == ("NULL_VALUE" if want[i] is None else "PRESENT"), (agg.name, status)


@st.composite
def parity_cases(draw: st.DrawFn) -> tuple[AggViewCase, datetime]:
    case = draw(agg_view_cases("v0", draw(st.sampled_from(sorted(ENTITY_KEYS))), extreme=True))
    t = minute(draw(st.integers(0, 3 * 1440 + 10) | st.sampled_from([60, 1440, 2880, 65])))
    return case, t


@SETTINGS
@given(drawn=parity_cases(), incremental=st.booleans())
def test_online_equals_offline_at_the_materialized_end(
    online_config: tuple[str, Callable[[], None]],
    drawn: tuple[AggViewCase, datetime],
    incremental: bool,
) -> None:
    case, t = drawn
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(case, Path(tmp), online_config)
        if incremental:
            store.materialize_incremental(t - timedelta(hours=7))
            store.materialize_incremental(t)
        else:
            store.materialize(minute(-100_000), t)
        check_parity(store, case, t)
        store.materialize(minute(-100_000), t)  # re-running changes nothing
        check_parity(store, case, t)
        store.close()


@SETTINGS
@given(drawn=parity_cases(), later=st.lists(st.integers(1, 4 * 1440), min_size=1, max_size=3))
def test_values_age_out_as_now_moves(
    online_config: tuple[str, Callable[[], None]],
    drawn: tuple[AggViewCase, datetime],
    later: list[int],
) -> None:
    """Materialized past every event, read at later times: online(now) == offline(now)."""
    case, _ = drawn
    end = minute(3 * 1440 + 2)  # after every generated event
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(case, Path(tmp), online_config)
        store.materialize_incremental(end)
        for offset in sorted(later):
            check_parity(store, case, end + timedelta(minutes=offset))
        store.close()


@SETTINGS
@given(case=agg_view_cases("v0", "user", extreme=True), data=st.data())
def test_late_rows_heal_their_tiles(
    online_config: tuple[str, Callable[[], None]], case: AggViewCase, data: st.DataObject
) -> None:
    """A file of rows arriving after a run (some with old event times, created later) is
    picked up by the next incremental run: the tiles it touches are recomputed whole."""
    from tests.reference import SourceRow

    first, second = minute(1440), minute(2 * 1440 + 30)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(case, Path(tmp), online_config)
        store.materialize_incremental(first)
        check_parity(store, case, first)
        late = []
        for _ in range(data.draw(st.integers(1, 6))):
            event = minute(data.draw(st.integers(0, 2 * 1440 + 29)))
            values = {
                c: data.draw(
                    st.sampled_from([1.5, -2.0, None]) if case.dtypes[c] == "Float64" else st.none()
                )
                for c in case.ref.features
            }
            late.append(
                SourceRow(
                    {"user_id": data.draw(st.sampled_from([1, 2]))}, event, minute(5000), values
                )
            )
        if not case.ref.has_created:  # without a created column only newer rows are picked up
            late = [SourceRow(r.keys, max(r.event_ts, first), None, r.values) for r in late]
        case.ref.files.append(late)
        write_agg_files(case, Path(tmp) / "data" / "v0")
        store.materialize_incremental(second)
        check_parity(store, case, second)
        store.close()
