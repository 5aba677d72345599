"""Aggregated views online, on both stores: statuses, staleness, errors, and the store's
guarantees for tiles (never replaced by an earlier run's, refused under a changed claim,
dropped with their view, swept when no window can read them), one round trip per request."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from featurestore.errors import OnlineStoreError, RetrievalError
from featurestore.online.base import ViewIdentity
from tests.aggregations.agg_repo import T0, hours, make_repo, online_dict, write_txn

ROWS = [
    (1, hours(-30), 10.0, 1),
    (1, hours(-2), 20.0, 2),
    (1, hours(-0.5), 30.0, None),
    (2, hours(-100), 5.0, 5),
]
SUMS = [
    "user_txn:count_amount_1h",
    "user_txn:sum_amount_1d",
    "user_txn:mean_amount_7d",
    "user_txn:max_amount_1h",
]


@pytest.fixture(
    params=["sqlite", "redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)]
)
def online(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield "online_store: {type: sqlite, path: data/online.db}"
    elif request.param == "redis":
        yield f"online_store: {{type: redis, url: '{request.getfixturevalue('redis_url')}'}}"
    else:
        url = request.getfixturevalue("cluster_url")
        yield f"online_store: {{type: redis, url: '{url}', cluster: true}}"


def test_never_materialized_is_not_found_then_never_again(tmp_path: Path, online: str) -> None:
    store = make_repo(tmp_path, online, ROWS)
    before = store.get_online_features(features=SUMS, entity_rows=[{"user_id": 1}], now=T0)
    assert set(before.statuses["count_amount_1h"]) == {"NOT_FOUND"}
    store.materialize_incremental(T0)
    after = store.get_online_features(
        features=SUMS, entity_rows=[{"user_id": 1}, {"user_id": 3}], now=T0
    )
    values = after.to_dict()
    assert values["count_amount_1h"] == [1, 0]  # user 3 has no events: empty window, not NOT_FOUND
    assert values["sum_amount_1d"] == [50.0, 0.0]
    assert values["mean_amount_7d"] == [20.0, None]
    assert after.statuses["mean_amount_7d"] == ["PRESENT", "NULL_VALUE"]
    assert after.statuses["count_amount_1h"] == ["PRESENT", "PRESENT"]
    # every value carries the view's covered end
    assert set(after.event_timestamps["sum_amount_1d"]) == {T0}
    store.close()


def test_values_age_out_and_staleness_beyond_ttl_is_outside_max_age(
    tmp_path: Path, online: str
) -> None:
    store = make_repo(tmp_path, online, ROWS)
    store.materialize_incremental(T0)
    later = store.get_online_features(features=SUMS, entity_rows=[{"user_id": 1}], now=hours(1.5))
    assert later.to_dict()["count_amount_1h"] == [0]  # the event at -0.5 h left the window
    assert later.to_dict()["sum_amount_1d"] == [50.0]
    stale = store.get_online_features(features=SUMS, entity_rows=[{"user_id": 1}], now=hours(2.01))
    assert set(stale.statuses["sum_amount_1d"]) == {"OUTSIDE_MAX_AGE"}
    assert stale.to_dict()["sum_amount_1d"] == [None]
    with pytest.raises(RetrievalError, match=r"materialized up to .* after now="):
        store.get_online_features(features=SUMS, entity_rows=[{"user_id": 1}], now=hours(-1))
    store.close()


def test_a_request_mixing_plain_and_aggregated_views_is_one_round_trip(
    tmp_path: Path, online: str
) -> None:
    if "cluster" in online:
        pytest.skip("a cluster read is one round per master and the meta hash (redis_cluster.py)")
    store = make_repo(tmp_path, online, ROWS)
    store.materialize(hours(-200), T0)
    store.get_online_features(feature_service="scoring", entity_rows=[{"user_id": 1}], now=T0)
    reader = store._online_reader()  # warmed up: scripts loaded, registry read
    calls = []
    original = type(reader.store).read_tiles

    def counted(self, groups, tile_reads):  # type: ignore[no-untyped-def]
        calls.append(len(tile_reads))
        return original(self, groups, tile_reads)

    type(reader.store).read_tiles = counted  # type: ignore[method-assign]
    try:
        if "redis" in online:
            sent = []
            connection = reader.store._connection()
            send = connection.send_packed_command
            connection.send_packed_command = lambda packed, **kw: (
                sent.append(1),
                send(packed, **kw),
            )[1]
        answer = store.get_online_features(
            feature_service="scoring", entity_rows=[{"user_id": 1}, {"user_id": 2}], now=T0
        )
    finally:
        type(reader.store).read_tiles = original  # type: ignore[method-assign]
    assert calls == [1]
    if "redis" in online:
        assert sent == [1]  # one pipeline: the plain views' and the tiles' scripts together
    assert answer.to_dict()["score"] == [0.5, None]
    assert answer.to_dict()["sum_amount_7d"] == [60.0, 5.0]
    store.close()


def test_tiles_are_never_replaced_by_an_earlier_runs(tmp_path: Path, online: str) -> None:
    store = make_repo(tmp_path, online, ROWS)
    store.materialize(hours(-200), T0)
    # a correction arrives; a backfill to an earlier end recomputes the tile but is refused
    write_txn(tmp_path / "data" / "txn.parquet", [*ROWS, (1, hours(-2), 1000.0, 1)])
    report = store.materialize(hours(-3), hours(-1))
    assert report.runs[0].rows_written == 0
    before = store.get_online_features(
        features=["user_txn:sum_amount_1d"], entity_rows=[{"user_id": 1}], now=T0
    )
    assert before.to_dict()["sum_amount_1d"] == [50.0]
    # the same end again rewrites (equal prefixes overwrite): the correction lands
    store.materialize(hours(-3), T0)
    after = store.get_online_features(
        features=["user_txn:sum_amount_1d"], entity_rows=[{"user_id": 1}], now=T0
    )
    assert after.to_dict()["sum_amount_1d"] == [1050.0]
    store.close()


def test_a_run_to_an_earlier_end_leaves_later_late_events_to_the_next_run(
    tmp_path: Path, online: str
) -> None:
    """Late events arrive on both sides of a run's end that is before the covered end: the
    run takes those before its end only, and the next run must still take the others (had
    the first moved the greatest created time past them, they were skipped for good)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.aggregations.agg_repo import TS

    store = make_repo(tmp_path, online, ROWS)
    store.materialize_incremental(T0)
    late = [(1, hours(-3), 100.0, 1), (1, hours(-0.25), 1000.0, 1)]
    rows = [*ROWS, *late]
    created = [r[1] for r in ROWS] + [hours(1)] * len(late)
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([r[0] for r in rows], pa.int64()),
                "ts": pa.array([r[1] for r in rows], TS),
                "created_ts": pa.array(created, TS),
                "amount": pa.array([r[2] for r in rows], pa.float64()),
                "qty": pa.array([r[3] for r in rows], pa.int64()),
            }
        ),
        tmp_path / "data" / "txn.parquet",
    )
    store.materialize_incremental(hours(-2))  # before the covered end: late events only
    store.materialize_incremental(hours(1))
    features = ["user_txn:sum_amount_1d"]
    online_sum = store.get_online_features(
        features=features, entity_rows=[{"user_id": 1}], now=hours(1)
    ).to_dict()["sum_amount_1d"]
    entity = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": [hours(1)]})
    offline = store.get_historical_features(entity, features).to_arrow()
    assert online_sum == offline["sum_amount_1d"].to_pylist() == [1150.0]
    store.close()


def test_materialize_with_a_start_inside_the_windows_still_gives_the_offline_values(
    tmp_path: Path, online: str
) -> None:
    """Defect: ``materialize(start, end)`` with ``start`` an hour before ``end`` wrote tiles
    of the events after ``start`` only, so the 1-day sum and the 7-day mean read online were
    partial, served as PRESENT. A first run reads back as far as its windows do."""
    import pyarrow as pa

    store = make_repo(tmp_path, online, ROWS)
    store.materialize(hours(-1), T0)
    features = [*SUMS, "user_txn:count_amount_7d"]
    rows = [{"user_id": 1}, {"user_id": 2}]
    online_values = store.get_online_features(features=features, entity_rows=rows, now=T0)
    entity = pa.table({"user_id": pa.array([1, 2], pa.int64()), "event_timestamp": [T0, T0]})
    offline = store.get_historical_features(entity, features).to_arrow()
    for feature in features:
        name = feature.split(":")[1]
        assert online_values.to_dict()[name] == offline[name].to_pylist(), name
    assert online_values.to_dict()["count_amount_7d"] == [3, 1]
    store.close()


def test_a_read_of_more_tiles_than_lua_can_unpack_at_once(tmp_path: Path, online: str) -> None:
    """Second slides over hours: a read at 12:59:59.5 needs about 10,800 tiles (two windows'
    left edges and their shared right edge, second by second), more than Redis's Lua can
    ``unpack`` into one HMGET (8,000): the single-server script failed ("too many results to
    unpack"), at some times of the hour only."""
    import pyarrow as pa

    from featurestore import FeatureStore

    store = make_repo(tmp_path, online, ROWS)
    store.close()
    seconds = (
        '[Aggregation(column="amount", function="sum", time_window=timedelta(hours=h, '
        'minutes=59, seconds=s), slide_interval=timedelta(seconds=1), name=f"sum_{h}h")'
        " for h, s in ((5, 58), (9, 57))]"
    )
    definitions = (tmp_path / "features.py").read_text()
    start = definitions.index("aggregations=[")
    end = definitions.index("],\n)", start) + 2
    (tmp_path / "features.py").write_text(
        definitions[:start] + f"aggregations={seconds}," + definitions[end:]
    )
    store = FeatureStore(tmp_path)
    store.apply()
    now = hours(-1) + timedelta(minutes=59, seconds=59, milliseconds=500)
    store.materialize(hours(-200), now)
    features = ["user_txn:sum_5h", "user_txn:sum_9h"]
    online_values = store.get_online_features(
        features=features, entity_rows=[{"user_id": 1}], now=now
    ).to_dict()
    entity = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": [now]})
    offline = store.get_historical_features(entity, features).to_arrow()
    assert online_values["sum_5h"] == offline["sum_5h"].to_pylist() == [50.0]
    assert online_values["sum_9h"] == offline["sum_9h"].to_pylist() == [50.0]
    store.close()


def test_an_overlapping_run_with_an_earlier_end_does_not_move_the_covered_end_back(
    tmp_path: Path, online: str
) -> None:
    """Run A (to 12:00) reads the watermark, then run B (to 13:00) starts and finishes, then
    A writes its watermark: the covered end went back to 12:00 while B's tiles hold events
    up to 13:00, so a read at 12:42 (allowed: after the covered end) counted the event at
    12:44. A watermark never moves the end back."""
    import threading

    import pyarrow as pa

    from featurestore import FeatureStore
    from featurestore.materialize import Progress, Window

    rows = [(1, hours(11 + 10 / 60), 1.0, 1), (1, hours(12 + 20 / 60), 2.0, 1)]
    rows.append((1, hours(12 + 44 / 60), 4.0, 1))
    store = make_repo(tmp_path, online, rows)
    store.materialize_incremental(hours(11))
    b_finished = threading.Event()

    class WaitForB(Progress):
        def view_started(self, view: str, window: Window) -> None:
            if view == "user_txn":
                b_finished.wait(30)

    def run_a() -> None:
        a = FeatureStore(tmp_path)
        try:
            a.materialize_incremental(hours(12), views=["user_txn"], progress=WaitForB())
        finally:
            a.close()

    thread = threading.Thread(target=run_a)
    thread.start()
    b = FeatureStore(tmp_path)
    try:
        b.materialize_incremental(hours(13), views=["user_txn"])
    finally:
        b.close()
        b_finished.set()
        thread.join()
    features = ["user_txn:sum_amount_1h"]
    with pytest.raises(RetrievalError, match=r"materialized up to 2026-03-02T13:00:00"):
        store.get_online_features(
            features=features, entity_rows=[{"user_id": 1}], now=hours(12 + 42 / 60)
        )
    answer = store.get_online_features(
        features=features, entity_rows=[{"user_id": 1}], now=hours(13)
    )
    assert set(answer.event_timestamps["sum_amount_1h"]) == {hours(13)}  # B's end stands
    entity = pa.table({"user_id": pa.array([1], pa.int64()), "event_timestamp": [hours(13)]})
    offline = store.get_historical_features(entity, features).to_arrow()
    assert answer.to_dict()["sum_amount_1h"] == offline["sum_amount_1h"].to_pylist() == [6.0]
    store.close()


def test_tile_writes_are_refused_once_the_claim_changed(tmp_path: Path, online: str) -> None:
    from featurestore.online.base import open_online_store

    store = make_repo(tmp_path, online, ROWS)
    with open_online_store(store.config) as raw:
        identity = ViewIdentity.of(store.state.view_record("user_txn"))
        claim = raw.claim(identity)
        raw.drop_view("user_txn")  # what an apply changing the view does
        with pytest.raises(OnlineStoreError, match="changed under this run"):
            raw.write_tiles(claim, ["user_id=i1"], [[((0, 1), b"\x00" * 40)]])
    store.close()


def test_dropping_the_view_removes_its_tiles_and_old_tiles_are_swept(
    tmp_path: Path, online: str
) -> None:
    rows = [(1, T0 + timedelta(hours=h), 1.0, 1) for h in range(-24 * 9, 24 * 3, 5)]
    store = make_repo(tmp_path, online, rows)
    store.materialize_incremental(T0)
    first = _tile_count(store)
    store.materialize_incremental(T0 + timedelta(days=3))  # crosses day boundaries: swept
    swept = _tile_count(store)
    assert 0 < swept < first + 3 * 24 + 10
    check = store.get_online_features(
        features=["user_txn:count_amount_7d"],
        entity_rows=[{"user_id": 1}],
        now=T0 + timedelta(days=3),
    )
    assert check.to_dict()["count_amount_7d"] == [
        sum(1 for _, t, _, _ in rows if T0 - timedelta(days=4) <= t < T0 + timedelta(days=3))
    ]
    from featurestore.online.base import open_online_store

    with open_online_store(store.config) as raw:
        raw.drop_view("user_txn")
    assert _tile_count(store) == 0
    store.close()


def _tile_count(store) -> int:  # type: ignore[no-untyped-def]
    """How many tiles the store holds (all generations)."""
    from featurestore.online.base import open_online_store

    with open_online_store(store.config) as raw:
        if hasattr(raw, "_db"):
            return raw._db.execute("SELECT count(*) FROM view_tiles").fetchone()[0]
        if not hasattr(raw, "client"):  # a cluster: redis-py's client scans every master
            cluster = raw._nodes.cluster()
            return sum(
                sum(1 for f in cluster.hkeys(k) if f.count(b":") == 2)
                for k in cluster.scan_iter(match="aggs|*")
            )
        client = raw.client
        return sum(
            sum(1 for f in client.hkeys(k) if f.count(b":") == 2)
            for k in client.scan_iter(match="aggs|*")
        )


def test_rows_of_another_definition_are_refused_and_counted(tmp_path: Path, online: str) -> None:
    store = make_repo(tmp_path, online, ROWS)
    store.materialize_incremental(T0)
    (tmp_path / "features.py").write_text(
        (tmp_path / "features.py").read_text().replace("hours=2", "hours=3")
    )
    from featurestore.registry import Registry

    # a registry applied elsewhere (not dropping this store's data): the reader's definition differs
    Registry(store.config.registry_path, "aggs").apply(store.load_definitions(), tmp_path)
    answer = store.get_online_features(features=SUMS, entity_rows=[{"user_id": 1}], now=T0)
    assert set(answer.statuses["sum_amount_1d"]) == {"NOT_FOUND"}
    assert store._online_reader().store.refused_rows.get("user_txn", 0) > 0
    store.close()


def test_tiles_of_the_layout_before_exact_int_sums_are_never_decoded(
    tmp_path: Path, online: str
) -> None:
    """An integer sum's tile gained a field (``wraps``, partials.py): tiles stored by the
    code before it (same definition and fingerprint) must never be decoded with the new
    layout. The tile layout id covers the fields, so such tiles belong to another identity:
    a read finds the view not materialized for its own (NOT_FOUND, the tiles counted as
    refused) and the next run drops them and writes new ones."""
    from dataclasses import replace

    import pyarrow as pa

    from featurestore.aggregations.online import tile_codec
    from featurestore.aggregations.partials import ColumnPartials, Layout
    from featurestore.aggregations.plan import ViewAggregations
    from featurestore.columns import CREATED_TS, EVENT_TS
    from featurestore.online.base import Watermark, open_online_store
    from featurestore.online.codec import entity_key
    from featurestore.types import Int64

    store = make_repo(tmp_path, online, ROWS)
    plan = ViewAggregations.of(store.state.view("user_txn"))
    before = Layout(  # the partial record as the code before ``wraps`` laid it out
        tuple(
            ColumnPartials(c.index, c.name, c.dtype, tuple(k for k in c.kinds if k != "wraps"))
            for c in plan.layout.columns
        )
    )
    old = replace(plan, layout=before)
    current = ViewIdentity.of(store.state.view_record("user_txn"))
    start = T0 - timedelta(hours=1)  # the hour tile a read at T0 asks for
    tile = {name: pa.array([1], dtype.to_arrow()) for name, dtype in before.fields}
    tile[EVENT_TS] = pa.array([start], pa.timestamp("us", tz="UTC"))
    tile[CREATED_TS] = pa.array([T0], pa.timestamp("us", tz="UTC"))
    [row] = tile_codec(old).encode_batch(pa.RecordBatch.from_pydict(tile))
    with open_online_store(store.config) as raw:  # what a run of the code before wrote
        claim = raw.claim(current._replace(layout=old.layout_id))
        hour = plan.levels.index(3_600_000_000)
        number = int(start.timestamp()) // 3_600
        key = entity_key([("user_id", Int64, 1)])
        assert raw.write_tiles(claim, [key], [[((hour, number), row)]]) == 1
        raw.set_watermark(claim, Watermark(T0, None))
    answer = store.get_online_features(features=SUMS, entity_rows=[{"user_id": 1}], now=T0)
    assert set(answer.statuses["count_amount_1h"]) == {"NOT_FOUND"}
    assert store._online_reader().store.refused_rows.get("user_txn", 0) > 0
    store.materialize_incremental(T0)  # claims the current layout: the old tiles go
    values = online_dict(store, SUMS, [1], T0).to_dict()
    assert values["count_amount_1h"] == [1] and values["sum_amount_1d"] == [50.0]
    store.close()


def test_the_consistency_report_classes_aggregated_features_as_such(tmp_path: Path) -> None:
    from featurestore.reports.classes import FeatureKind
    from featurestore.reports.consistency import feature_kind

    store = make_repo(tmp_path, "online_store: {type: sqlite, path: data/online.db}", ROWS)
    assert feature_kind(store.state, "user_txn:sum_amount_1d") is FeatureKind.AGGREGATED
    assert feature_kind(store.state, "user_profile:score") is FeatureKind.PLAIN


def test_an_entity_asked_twice_in_one_request_gets_its_values_twice(
    tmp_path: Path, online: str
) -> None:
    store = make_repo(tmp_path, online, ROWS)
    store.materialize_incremental(T0)
    rows = [{"user_id": 1}, {"user_id": 2}, {"user_id": 1}]
    answer = store.get_online_features(features=SUMS, entity_rows=rows, now=T0).to_dict()
    assert answer["sum_amount_1d"] == [50.0, 0.0, 50.0]
    assert answer["count_amount_1h"] == [1, 0, 1]
    store.close()
