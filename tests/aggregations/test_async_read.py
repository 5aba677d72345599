"""The awaited tile read (``OnlineStore.read_tiles_async``, what the prediction service
calls) equals the blocking one bit for bit, on a real Redis and a real Redis Cluster: the
same raw tiles and covered end from the store, and the same values, statuses and event
times once decoded and folded, for generated views over every window and function, read at
several ``now``; mixed with plain views; with more keys than one script call reads; and
refusing another definition's tiles the same way."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.errors import RetrievalError
from featurestore.online.read import read_online, read_online_async
from tests.aggregations.agg_repo import T0, hours, make_repo
from tests.aggregations.test_parity import bits, key_rows
from tests.strategies import ENTITY_KEYS, AggViewCase, agg_view_cases, build_agg_repo, minute

pytestmark = pytest.mark.filterwarnings("ignore::featurestore.errors.SkippedRowsWarning")


@pytest.fixture(params=["redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)])
def online(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """The online_store line, and how to empty that store (for every example)."""
    if request.param == "redis":
        import redis

        url = request.getfixturevalue("redis_server")

        def flush() -> None:
            client = redis.Redis.from_url(url)
            client.flushall()
            client.close()

        yield f"online_store: {{type: redis, url: '{url}'}}", flush
    else:
        url = request.getfixturevalue("cluster_url")
        yield (
            f"online_store: {{type: redis, url: '{url}', cluster: true}}",
            request.getfixturevalue("redis_cluster").flush,
        )


def both_reads(store: Any, refs: Any, rows: list[dict[str, Any]], nows: list[Any]) -> Any:
    """Per ``now``: the blocking and the awaited raw tile reads and decoded responses of
    ``refs`` (a feature list or a service name) for ``rows``, on the same store."""
    from featurestore.online.codec import timestamp_us
    from featurestore.online.read import _requests, _tile_reads

    reader = store._online_reader()
    plan, _ = reader.plan(refs, False)
    assert plan.aggregated  # the tile read is what is compared
    raws = []
    for now in nows:
        _, columns, groups = _requests(plan, rows)
        _, tile_reads = _tile_reads(plan, columns, timestamp_us(now))
        raws.append((groups, tile_reads))
    blocking = [reader.store.read_tiles(g, t) for g, t in raws]
    responses: list[Any] = []
    for now in nows:
        try:
            responses.append(read_online(reader.store, plan, rows, now))
        except RetrievalError as exc:
            responses.append(overflow_message(exc))

    async def awaited() -> tuple[list[Any], list[Any]]:
        try:
            raw = [await reader.store.read_tiles_async(g, t) for g, t in raws]
            decoded: list[Any] = []
            for now in nows:
                try:
                    decoded.append(await read_online_async(reader.store, plan, rows, now))
                except RetrievalError as exc:
                    decoded.append(overflow_message(exc))
            return raw, decoded
        finally:
            await reader.store.close_async()

    raw_async, responses_async = asyncio.run(awaited())
    store._reader = None  # close_async closed it
    return blocking, raw_async, responses, responses_async


def overflow_message(exc: RetrievalError) -> str:
    """An Int64 sum overflow's message (a read's answer, compared); any other error raised."""
    if "overflows Int64" not in str(exc):
        raise exc
    return str(exc)


def assert_same(sync: Any, awaited: Any) -> None:
    """Two responses equal bit for bit: values (floats by IEEE bits), types, statuses and
    event times; or the same Int64 sum overflow error (a message) from both."""
    if isinstance(sync, str) or isinstance(awaited, str):
        assert sync == awaited
        return
    a, b = sync.to_arrow(), awaited.to_arrow()
    assert a.schema == b.schema
    for name in a.column_names:
        assert [bits(v) for v in a[name].to_pylist()] == [bits(v) for v in b[name].to_pylist()]
    assert sync.statuses == awaited.statuses
    assert sync.event_timestamps == awaited.event_timestamps


@st.composite
def cases(draw: st.DrawFn) -> tuple[AggViewCase, list[int]]:
    case = draw(agg_view_cases("v0", draw(st.sampled_from(sorted(ENTITY_KEYS))), extreme=True))
    return case, draw(st.lists(st.integers(0, 3 * 1440), min_size=1, max_size=3))


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(drawn=cases())
def test_the_awaited_tile_read_equals_the_blocking_one(
    online: tuple[str, Any], drawn: tuple[AggViewCase, list[int]]
) -> None:
    case, offsets = drawn
    config, flush = online
    flush()
    end = minute(3 * 1440 + 2)
    with tempfile.TemporaryDirectory() as tmp:
        store = build_agg_repo([case], Path(tmp), config + "\n")
        store.materialize_incremental(end - timedelta(hours=20))
        store.materialize_incremental(end)
        view = store.state.view(case.ref.name)
        refs = [f"{view.name}:{a.name}" for a in view.aggregations]
        nows = [end] + [end + timedelta(minutes=m) for m in sorted(offsets)]
        blocking, raw_async, responses, responses_async = both_reads(
            store, refs, key_rows(case), nows
        )
        assert raw_async == blocking  # rows, covered end and every tile's bytes
        for sync, awaited in zip(responses, responses_async, strict=True):
            assert_same(sync, awaited)
        store.close()


ROWS = [(u, hours(-h), 1.5 * h, u) for u in range(1, 40) for h in (0.2, 3, 30, 100)]


def test_mixed_with_plain_views_and_many_keys_it_is_the_same_read(
    tmp_path: Path, online: tuple[str, Any]
) -> None:
    """A service reading a plain and an aggregated view, for more keys than one script call
    reads (several calls, one pipeline on one server)."""
    config, flush = online
    flush()
    store = make_repo(tmp_path, config, ROWS)
    store.materialize_incremental(T0)
    rows = [{"user_id": u} for u in range(0, 45)] * 60  # 2,700 keys, some absent
    nows = [T0, hours(1), hours(1.9), hours(2.5)]  # the last beyond the ttl: OUTSIDE_MAX_AGE
    blocking, raw_async, responses, responses_async = both_reads(store, "scoring", rows, nows)
    assert raw_async == blocking
    for sync, awaited in zip(responses, responses_async, strict=True):
        assert_same(sync, awaited)
    assert responses_async[0].to_dict()["score"][:2] == [None, 0.5]
    assert responses_async[0].to_dict()["sum_amount_7d"][1] == pytest.approx(1.5 * 133.2)
    assert set(responses_async[-1].statuses["sum_amount_7d"]) == {"OUTSIDE_MAX_AGE"}
    store.close()


def test_another_definitions_tiles_are_refused_and_counted_the_same(
    tmp_path: Path, online: tuple[str, Any]
) -> None:
    config, flush = online
    flush()
    store = make_repo(tmp_path, config, ROWS)
    store.materialize_incremental(T0)
    (tmp_path / "features.py").write_text(
        (tmp_path / "features.py").read_text().replace("hours=2", "hours=3")
    )
    from featurestore.registry import Registry

    # a registry applied elsewhere (not dropping this store's data): the reader's definition differs
    Registry(store.config.registry_path, "aggs").apply(store.load_definitions(), tmp_path)
    features = ["user_txn:sum_amount_1d", "user_txn:count_amount_1h"]
    reader = store._online_reader()
    plan, _ = reader.plan(features, False)
    rows = [{"user_id": 1}, {"user_id": 2}]
    read_online(reader.store, plan, rows, T0)
    refused = reader.store.refused_rows["user_txn"]

    async def awaited() -> Any:
        try:
            return await read_online_async(reader.store, plan, rows, T0)
        finally:
            await reader.store.close_async()

    answer = asyncio.run(awaited())
    assert set(answer.statuses["sum_amount_1d"]) == {"NOT_FOUND"}
    assert refused > 0 and reader.store.refused_rows["user_txn"] == 2 * refused
    store._reader = None
    store.close()


def test_the_awaited_read_of_plain_and_aggregated_views_is_one_round_trip(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the blocking read (tests/aggregations/test_online.py): the plain views' and the
    tiles' script calls go to the server in one write, one pipeline."""
    from redis.asyncio.connection import AbstractConnection

    store = make_repo(tmp_path, f"online_store: {{type: redis, url: '{redis_url}'}}", ROWS)
    store.materialize_incremental(T0)
    reader = store._online_reader()
    plan, _ = reader.plan("scoring", False)
    assert plan.aggregated and plan.groups  # both kinds of views
    sent: list[int] = []
    send = AbstractConnection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(1)
        await send(self, command, check_health)

    async def reads() -> Any:
        rows = [{"user_id": 1}, {"user_id": 2}]
        await read_online_async(reader.store, plan, rows, T0)  # warm: connection, scripts
        sent.clear()
        try:
            return await read_online_async(reader.store, plan, rows, T0)
        finally:
            await reader.store.close_async()

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    answer = asyncio.run(reads())
    store._reader = None
    assert sent == [1]
    assert answer.to_dict()["score"] == [0.5, None]
    assert answer.to_dict()["sum_amount_7d"][0] == pytest.approx(1.5 * 133.2)
    store.close()
