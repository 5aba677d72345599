"""Training-set aggregations against the brute-force reference (tests/reference.py).

For every function and dtype, on random messy events (nulls, NaN, duplicate events and
complete ties, late rows, events exactly at ``t``, at a window's snapped start and on tile
boundaries, keys without events, int, string and composite keys), each entity row's value
equals the reference's: counts, integer sums, min, max and last exactly; float sums exactly
too (the generated values are dyadic, so every order of addition gives the same sum); mean,
variance and stddev within 1e-12 relative (Welford/Chan merges round differently from the
reference's exact sums, by design). Entity times are drawn on and around the same
boundaries, before any data and after it.
"""

from __future__ import annotations

import math
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.errors import RetrievalError
from featurestore.types import dtype_by_name
from tests.aggregations.overflows import each_answered
from tests.reference import RefView, SourceRow, SumOutOfRange, aggregate, window_events
from tests.strategies import (
    ENTITY_KEYS,
    KEY_VALUES,
    AggViewCase,
    _maybe_null,
    agg_view_cases,
    build_agg_repo,
    minute,
)

pytestmark = pytest.mark.filterwarnings("ignore::featurestore.errors.SkippedRowsWarning")
ENTITY_MINUTES = st.integers(-10, 3 * 1440 + 60) | st.sampled_from(
    [m + d for m in (0, 5, 30, 60, 90, 1440, 1445, 2880) for d in (-1, 0, 1)]
)


@st.composite
def entity_rows(draw: st.DrawFn, case: AggViewCase) -> list[dict[str, Any]]:
    """Rows of the view's keys (and unknown ones), some at its events' own times."""
    events = [r for f in case.ref.files for r in f if r.event_ts is not None]
    rows = []
    for _ in range(draw(st.integers(1, 20))):
        if events and draw(st.booleans()):
            source = draw(st.sampled_from(events))
            keys = dict(source.keys)
            t = source.event_ts + timedelta(minutes=draw(st.sampled_from([0, 0, 1, 5])))
        else:
            keys = {
                k: draw(_maybe_null(st.sampled_from([*KEY_VALUES[k]]), 15))
                for k in case.ref.join_keys
            }
            t = minute(draw(ENTITY_MINUTES))
        rows.append({**keys, "event_timestamp": draw(_maybe_null(st.just(t), 15))})
    return rows


def close(got: Any, expected: Any, function: str, scale: float = 0.0) -> bool:
    """``got == expected``; a mean, variance or stddev within 1e-12 relative, or of the
    values' ``scale`` (their largest magnitude): Welford/Chan round relative to the values,
    so the mean of 2**63 - 1 and -(2**63) is 0.0 give or take 2**63 * 1e-16."""
    if isinstance(got, float) and isinstance(expected, float):
        if math.isnan(got) or math.isnan(expected):
            return math.isnan(got) and math.isnan(expected)
        if function in ("mean", "variance", "stddev"):
            tolerance = 1e-12 * (scale * scale if function == "variance" else scale)
            return (
                math.isclose(got, expected, rel_tol=1e-12, abs_tol=max(1e-300, tolerance))
                or got == expected
            )
    return got == expected


def entity_table(case: AggViewCase, rows: list[dict[str, Any]]) -> pa.Table:
    """The entity rows as an Arrow table: the view's join keys and ``event_timestamp``."""
    columns = {
        k: pa.array([r[k] for r in rows], pa.int64() if k == "user_id" else pa.string())
        for k in case.ref.join_keys
    }
    columns["event_timestamp"] = pa.array(
        [r["event_timestamp"] for r in rows], pa.timestamp("us", tz="UTC")
    )
    return pa.table(columns)


def check_against_reference(
    store: Any, case: AggViewCase, rows: list[dict[str, Any]], as_of: str
) -> None:
    """Every aggregation's value at every row equals the reference's; an integer sum whose
    total leaves Int64 at some row (the reference raises) is an error naming the view and
    column when asked (alone: one error fails the call), and every other aggregation of the
    view, asked together, is still answered (a partial sum out of range is no error)."""
    view = store.state.view(case.ref.name)
    expected: dict[str, list[Any]] = {}
    scales: dict[str, list[float]] = {}
    overflowing = []
    for agg in view.aggregations:
        column: list[Any] = []
        scale: list[float] = []
        for row in rows:
            t = row["event_timestamp"]
            if t is None or any(row[k] is None for k in case.ref.join_keys):
                column.append(None)
                scale.append(0.0)
                continue
            found = window_events(case.ref, row, t, agg.time_window, agg.slide_interval, as_of)
            values = [r.values[agg.column] for _, r in found]
            numbers = [abs(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
            scale.append(float(max(numbers, default=0)))
            try:
                column.append(aggregate(agg.function, values, len(found)))
            except SumOutOfRange:
                overflowing.append(agg)
                break
        else:
            expected[agg.name], scales[agg.name] = column, scale
    entities = entity_table(case, rows)
    for agg in overflowing:
        alone = [f"{view.name}:{agg.name}"]
        with pytest.raises(RetrievalError, match=f"'{view.name}'.*'{agg.column}' overflows"):
            store.get_historical_features(entities, alone, as_of=as_of).to_arrow()
    if not expected:
        return
    refs = [f"{view.name}:{name}" for name in expected]
    table = store.get_historical_features(entities, refs, as_of=as_of).to_arrow()
    for agg in view.aggregations:
        if agg.name not in expected:
            continue
        dtype = agg.output_dtype(dtype_by_name(case.dtypes[agg.column]))
        assert table.schema.field(agg.name).type == dtype.to_arrow(), agg.name
        got_column = table[agg.name].to_pylist()
        for i, row in enumerate(rows):
            want = expected[agg.name][i]
            assert close(got_column[i], want, agg.function, scales[agg.name][i]), (
                agg.name,
                row,
                got_column[i],
                want,
            )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    entity=st.sampled_from(sorted(ENTITY_KEYS)),
    as_of=st.sampled_from(["event", "created"]),
)
def test_every_function_matches_the_reference(data: st.DataObject, entity: str, as_of: str) -> None:
    case = data.draw(agg_view_cases("v0", entity))
    rows = data.draw(entity_rows(case))
    with tempfile.TemporaryDirectory() as tmp:
        store = build_agg_repo([case], Path(tmp))
        check_against_reference(store, case, rows, as_of)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), as_of=st.sampled_from(["event", "created"]))
def test_int64_sums_near_the_limits_match_the_reference(data: st.DataObject, as_of: str) -> None:
    """Only the Int64 column, about every other value near a limit, events within two hours
    (windows hold several): tiles' and partial sums wrap up and down, and each window's sum
    is its exact total, or an error when that total leaves Int64, as the reference's Python
    ints say."""
    case = data.draw(agg_view_cases("v0", "user", columns=["qty"], minutes=st.integers(0, 120)))
    rows = data.draw(entity_rows(case))
    with tempfile.TemporaryDirectory() as tmp:
        store = build_agg_repo([case], Path(tmp))
        check_against_reference(store, case, rows, as_of)


def test_events_after_every_usable_row_do_not_spill_into_the_next_key() -> None:
    """Hypothesis found it: the engine keeps events up to the latest entity time of any row,
    a row with a null key included, so an event can lie after every usable row's time; packed
    as key * span + time it then landed among the next key's times (here the key without
    events), and that key's row counted it."""
    from datetime import UTC

    at = datetime(2024, 1, 1, tzinfo=UTC)
    event = SourceRow({"merchant": "1"}, at + timedelta(days=1, minutes=6), None, {"amount": None})
    case = AggViewCase(
        ref=RefView("v0", ["merchant"], None, ["amount"], [[event]], has_created=False),
        entity="merchant",
        dtypes={"amount": "Float64"},
        aggregations=[("amount", "count", timedelta(minutes=5), None)],
        timestamp_unit="us",
    )
    rows = [
        {"merchant": None, "event_timestamp": at + timedelta(days=1, minutes=7)},
        {"merchant": "1", "event_timestamp": at},
        {"merchant": "12", "event_timestamp": at},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = build_agg_repo([case], Path(tmp))
        check_against_reference(store, case, rows, "event")


def test_a_head_under_a_millisecond_slide_folds_after_the_body_as_of_created() -> None:
    """``as_of="created"`` numbered each row's pieces ``range * 2**40 + tile number`` and the
    head ``ranges * 2**40``: with a slide under ~1.6 ms a tile number passes 2**40 (in 2026),
    so the head sorted before the body and ``last`` took the body's latest event."""
    from datetime import UTC

    t = datetime(2026, 3, 2, 12, 0, 0, 500, tzinfo=UTC)  # inside a 1 ms slide: a head
    body = SourceRow({"user_id": 1}, t - timedelta(milliseconds=5), t, {"amount": 1.0})
    head = SourceRow({"user_id": 1}, t - timedelta(microseconds=300), t, {"amount": 2.0})
    case = AggViewCase(
        ref=RefView("v0", ["user_id"], None, ["amount"], [[body, head]], has_created=True),
        entity="user",
        dtypes={"amount": "Float64"},
        aggregations=[
            ("amount", function, timedelta(milliseconds=10), timedelta(milliseconds=1))
            for function in ("last", "count")
        ],
        timestamp_unit="us",
    )
    rows = [{"user_id": 1, "event_timestamp": t}]
    with tempfile.TemporaryDirectory() as tmp:
        store = build_agg_repo([case], Path(tmp))
        for as_of in ("event", "created"):
            check_against_reference(store, case, rows, as_of)


@settings(max_examples=100, deadline=None)
@given(
    codes=st.lists(st.integers(0, 2**40), min_size=1, max_size=30),
    times=st.lists(st.integers(-(2**62), 2**62) | st.integers(0, 3), min_size=30, max_size=30),
    spread=st.booleans(),
)
def test_rows_are_ordered_by_code_then_time_as_lexsort_orders_them(
    codes: list[int], times: list[int], spread: bool
) -> None:
    """The packed sort (code and time in one int64) and its fallback when they do not fit
    both give lexsort's order, ties in row order."""
    import numpy as np

    from featurestore.aggregations.offline import _by_code_and_time

    code = np.array(codes, dtype=np.int64)
    t = np.array(times[: len(codes)], dtype=np.int64)
    if not spread:  # times close together: the packed path
        t = t % 4
    rows = np.arange(len(code))[::-1].copy()
    expected = rows[np.lexsort((t[rows], code[rows]))]
    assert _by_code_and_time(code, t, rows).tolist() == expected.tolist()


def training_sets_under(
    case: AggViewCase,
    rows: list[dict[str, Any]],
    module: Any,
    name: str,
    values: tuple[Any, ...],
    as_of: str = "event",
) -> list[dict[str, pa.Table | None]]:
    """The view's training set for ``rows`` with ``module.name`` set to each of ``values``:
    per aggregation, a table holding it (None: its sum overflows, ``overflows.py``)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = build_agg_repo([case], Path(tmp))
        view = store.state.view(case.ref.name)
        refs = [f"{view.name}:{a.name}" for a in view.aggregations]
        tables = []
        default = getattr(module, name)
        entities = entity_table(case, rows)

        def training_set(asked: list[str]) -> pa.Table:
            return store.get_historical_features(entities, asked, as_of=as_of).to_arrow()

        for value in values:
            setattr(module, name, value)
            try:
                tables.append(each_answered(training_set, refs))
            finally:
                setattr(module, name, default)
    return tables


def assert_same_bits(left: dict[str, pa.Table | None], right: dict[str, pa.Table | None]) -> None:
    """Every aggregation equal, floats bit for bit (NaN and -0.0 included), nulls alike; or
    an overflow on both sides."""
    assert left.keys() == right.keys()
    for ref, table in left.items():
        other = right[ref]
        if table is None or other is None:
            assert table is other, ref
            continue
        name = ref.split(":")[1]
        a, b = table[name].combine_chunks(), other[name].combine_chunks()
        assert a.is_null().equals(b.is_null()), name
        if pa.types.is_floating(a.type):
            x = a.fill_null(0.0).to_numpy(zero_copy_only=False)
            y = b.fill_null(0.0).to_numpy(zero_copy_only=False)
            assert x.tobytes() == y.tobytes(), name
        else:
            assert a.equals(b), name


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), entity=st.sampled_from(sorted(ENTITY_KEYS)))
def test_chunks_of_keys_give_the_bits_of_one_chunk(data: st.DataObject, entity: str) -> None:
    """Keys are cut into chunks (``CHUNK_EVENTS``) computed on two threads: one key per
    chunk gives every value bit for bit as all keys in one chunk."""
    from featurestore.aggregations import offline

    case = data.draw(agg_view_cases("v0", entity))
    rows = data.draw(entity_rows(case))
    assert_same_bits(*training_sets_under(case, rows, offline, "CHUNK_EVENTS", (10**9, 1)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), entity=st.sampled_from(sorted(ENTITY_KEYS)))
def test_passes_of_rows_as_of_created_give_the_bits_of_one(
    data: st.DataObject, entity: str
) -> None:
    """``as_of="created"`` takes the rows in passes of about ``PAIRS_PER_PASS`` (row, event)
    pairs: one row per pass gives every value bit for bit as all rows in one pass."""
    from featurestore.aggregations import offline

    case = data.draw(agg_view_cases("v0", entity))
    rows = data.draw(entity_rows(case))
    tables = training_sets_under(case, rows, offline, "PAIRS_PER_PASS", (10**9, 1), "created")
    assert_same_bits(*tables)


def every_row_late(
    events: Any, packed: Any, key: Any, row_key: Any, t: Any, base: int, span: int
) -> tuple[Any, Any]:
    """A stand-in for ``offline._late_rows`` that calls every row with an event before its
    time late, at its key's first event: every window merged from its known events alone."""
    import numpy as np

    before = np.searchsorted(packed, row_key * span + (t - base), side="left") - 1
    key_first = np.searchsorted(packed, row_key * span, side="left")
    late = np.flatnonzero(before >= key_first)
    return late, key_first[late]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), entity=st.sampled_from(sorted(ENTITY_KEYS)))
def test_as_of_created_shares_tiles_with_the_bits_of_merging_each_row_alone(
    data: st.DataObject, entity: str
) -> None:
    """as_of="created" merges only the rows that see a late event (and only their pieces
    from the first late one) from their own known events, the rest from the shared tiles:
    every value bit for bit as merging every row's whole window from its known events."""
    from featurestore.aggregations import offline

    case = data.draw(agg_view_cases("v0", entity))
    rows = data.draw(entity_rows(case))
    functions = (offline._late_rows, every_row_late)
    assert_same_bits(*training_sets_under(case, rows, offline, "_late_rows", functions, "created"))


def test_as_of_created_holds_a_bounded_number_of_pairs_for_a_busy_key() -> None:
    """One key with 3,000 events in six days, each created two days after it, and an entity
    row at each: the rows see late events, and as_of="created" pairs each with every event
    of its window after its first late one (~4 million pairs). Held at once they took
    ~700 MB (quadratic: a busier key ran out of memory); in passes, a bounded ~160 MB."""
    import tracemalloc
    from datetime import UTC

    start = datetime(2026, 3, 1, tzinfo=UTC)
    times = [start + timedelta(seconds=i * 172) for i in range(3000)]
    late = timedelta(days=2)
    events = [
        SourceRow({"user_id": 1}, at, at + late, {"amount": float(i)}) for i, at in enumerate(times)
    ]
    case = AggViewCase(
        ref=RefView("v0", ["user_id"], None, ["amount"], [events], has_created=True),
        entity="user",
        dtypes={"amount": "Float64"},
        aggregations=[("amount", "sum", timedelta(days=7), None)],
        timestamp_unit="us",
    )
    rows = [{"user_id": 1, "event_timestamp": at} for at in times]
    with tempfile.TemporaryDirectory() as tmp:
        store = build_agg_repo([case], Path(tmp))
        entities = entity_table(case, rows)
        tracemalloc.start()
        try:
            job = store.get_historical_features(entities, ["v0:sum_amount_7d"], as_of="created")
            table = job.to_arrow()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    known = [float(sum(j for j, at in enumerate(times) if at + late <= t)) for t in times]
    assert table["sum_amount_7d"].to_pylist() == known  # integers: exact in any order
    assert known[-1] > 0 and peak < 400 * 2**20, f"peak {peak / 2**20:.0f} MB"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), entity=st.sampled_from(sorted(ENTITY_KEYS)))
def test_packed_events_give_the_bits_of_unpacked_ones(data: st.DataObject, entity: str) -> None:
    """DuckDB returns the events with key code and event time packed in one BIGINT when
    they fit (``PACKED_BITS``), in two columns when not: both give every value bit for bit."""
    from featurestore.offline import duckdb as engine

    case = data.draw(agg_view_cases("v0", entity))
    rows = data.draw(entity_rows(case))
    default = engine.PACKED_BITS
    assert_same_bits(*training_sets_under(case, rows, engine, "PACKED_BITS", (default, 0)))
