"""get_online_features: statuses with ttl enforced at read, typed values, and clear errors.

Runs on SQLite, on a throwaway Redis and on the throwaway Redis Cluster (``online_fs`` is
parametrized over the three; the cluster's round trips: tests/online/test_cluster.py).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import redis
from online_repo import DEFINITIONS, T0, put, write_repo

from featurestore import FeatureStore, RetrievalError, UnknownFeatureError
from featurestore.online.redis import RedisOnlineStore
from featurestore.online.response import NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE, PRESENT

DAY = timedelta(days=1)
US = timedelta(microseconds=1)


def online(fs: FeatureStore):  # type: ignore[no-untyped-def]
    return fs._online_reader().store


def read(fs: FeatureStore, features: Any, rows: Any, **kwargs: Any) -> Any:
    return fs.get_online_features(features, rows, **kwargs)


# --- statuses ------------------------------------------------------------------------------


def test_statuses_follow_the_design(online_fs: FeatureStore) -> None:
    put(
        online(online_fs),
        online_fs,
        "user_stats",
        [
            {"user_id": 1, "amount": 1.5, "count": 3, "city": "Oslo", "event_ts": T0},
            {"user_id": 2, "amount": None, "count": 4, "city": None, "event_ts": T0},
            {"user_id": 3, "amount": 9.0, "count": 9, "city": "Old", "event_ts": T0 - 2 * DAY},
        ],
    )
    response = read(
        online_fs,
        ["user_stats:amount", "user_stats:city"],
        [{"user_id": u} for u in (1, 2, 3, 4)],
        now=T0,
    )
    assert response.to_dict() == {
        "user_id": [1, 2, 3, 4],
        "amount": [1.5, None, None, None],
        "city": ["Oslo", None, None, None],
    }
    assert response.statuses == {
        "amount": [PRESENT, NULL_VALUE, OUTSIDE_MAX_AGE, NOT_FOUND],
        "city": [PRESENT, NULL_VALUE, OUTSIDE_MAX_AGE, NOT_FOUND],
    }
    assert response.event_timestamps["amount"] == [T0, T0, T0 - 2 * DAY, None]


def test_ttl_boundary_is_inclusive_at_now_minus_ttl(online_fs: FeatureStore) -> None:
    put(
        online(online_fs),
        online_fs,
        "user_stats",
        [
            {"user_id": 1, "amount": 1.0, "event_ts": T0 - DAY},
            {"user_id": 2, "amount": 2.0, "event_ts": T0 - DAY - US},
            {"user_id": 3, "amount": 3.0, "event_ts": T0 + DAY},  # after now: still the latest
        ],
    )
    response = read(online_fs, ["user_stats:amount"], {"user_id": [1, 2, 3]}, now=T0)
    assert response.statuses["amount"] == [PRESENT, OUTSIDE_MAX_AGE, PRESENT]
    assert response.to_dict()["amount"] == [1.0, None, 3.0]
    # moving now moves only the ttl check
    later = read(online_fs, ["user_stats:amount"], {"user_id": [1, 2, 3]}, now=T0 - US)
    assert later.statuses["amount"] == [PRESENT, PRESENT, PRESENT]


def test_a_view_without_ttl_never_expires(online_fs: FeatureStore) -> None:
    put(
        online(online_fs), online_fs, "user_profile", [{"user_id": 1, "score": 0.5, "event_ts": T0}]
    )
    response = read(online_fs, ["user_profile:score"], [{"user_id": 1}], now=T0 + 3650 * DAY)
    assert response.statuses["score"] == [PRESENT]


def test_now_defaults_to_the_current_time(online_fs: FeatureStore) -> None:
    wall = datetime.now(UTC)
    put(
        online(online_fs),
        online_fs,
        "user_stats",
        [
            {"user_id": 1, "amount": 1.0, "event_ts": wall - timedelta(minutes=5)},
            {"user_id": 2, "amount": 2.0, "event_ts": wall - DAY - timedelta(minutes=5)},
        ],
    )
    response = read(online_fs, ["user_stats:amount"], [{"user_id": 1}, {"user_id": 2}])
    assert response.statuses["amount"] == [PRESENT, OUTSIDE_MAX_AGE]


# --- values and types ----------------------------------------------------------------------


def test_values_carry_their_declared_types(online_fs: FeatureStore) -> None:
    f32 = float(np.float32(0.1))
    put(
        online(online_fs),
        online_fs,
        "user_stats",
        [{"user_id": 1, "amount": f32, "count": 2**62, "city": "Zürich ✓", "event_ts": T0}],
    )
    signup = datetime(2020, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
    put(
        online(online_fs),
        online_fs,
        "user_profile",
        [
            {
                "user_id": 1,
                "score": float("nan"),
                "verified": False,
                "signup": signup,
                "event_ts": T0,
            }
        ],
    )
    features = [
        "user_stats:amount",
        "user_stats:count",
        "user_stats:city",
        "user_profile:score",
        "user_profile:verified",
        "user_profile:signup",
    ]
    response = read(online_fs, features, [{"user_id": 1}, {"user_id": 2}], now=T0)
    values = response.to_dict()
    assert struct.pack(">f", values["amount"][0]) == struct.pack(">f", np.float32(0.1))
    assert values["count"] == [2**62, None]
    assert values["city"] == ["Zürich ✓", None]
    assert np.isnan(values["score"][0])  # NaN is a value...
    assert response.statuses["score"] == [PRESENT, NOT_FOUND]
    assert values["verified"] == [False, None]
    assert values["signup"] == [signup, None]
    table = response.to_arrow()
    assert table.schema.types == [
        pa.int64(),
        pa.float32(),
        pa.int64(),
        pa.string(),
        pa.float64(),
        pa.bool_(),
        pa.timestamp("us", tz="UTC"),
    ]
    assert table.column("score").null_count == 1  # ...and the missing one is a null
    df = response.to_df()
    assert [str(t) for t in df.dtypes] == [
        "Int64",
        "Float32",
        "Int64",
        "string",
        "Float64",
        "boolean",
        "datetime64[us, UTC]",
    ]


def test_services_full_names_and_the_asked_order(online_fs: FeatureStore) -> None:
    put(
        online(online_fs),
        online_fs,
        "user_stats",
        [{"user_id": 7, "amount": 1.0, "count": 2, "city": "A", "event_ts": T0}],
    )
    put(
        online(online_fs), online_fs, "user_profile", [{"user_id": 7, "score": 0.5, "event_ts": T0}]
    )
    by_name = read(online_fs, None, [{"user_id": 7}], feature_service="scoring", now=T0)
    by_object = online_fs.get_online_features(
        feature_service=online_fs.state.service("scoring"), entity_rows=[{"user_id": 7}], now=T0
    )
    assert (
        by_name.to_dict()
        == by_object.to_dict()
        == {
            "user_id": [7],
            "amount": [1.0],
            "count": [2],
            "city": ["A"],
            "score": [0.5],
        }
    )
    full = read(
        online_fs,
        ["user_profile:score", "user_stats:city"],
        [{"user_id": 7}],
        full_feature_names=True,
        now=T0,
    )
    assert list(full.to_dict()) == ["user_id", "user_profile__score", "user_stats__city"]
    with_meta = full.to_dict(include_event_timestamps=True, include_statuses=True)
    assert with_meta["user_stats__city__status"] == [PRESENT]
    assert with_meta["user_stats__city__ts"] == [T0]
    # the same columns in to_arrow and to_df (Feast's include_event_timestamps keyword)
    table = full.to_arrow(include_event_timestamps=True, include_statuses=True)
    assert table.column_names == list(with_meta)
    assert table.to_pylist() == [{k: v[0] for k, v in with_meta.items()}]
    frame = full.to_df(include_event_timestamps=True)
    assert frame["user_stats__city__ts"].tolist() == [T0]


def test_several_entities_and_views_in_one_round_trip(online_fs: FeatureStore) -> None:
    store = online(online_fs)
    put(store, online_fs, "user_stats", [{"user_id": 1, "amount": 1.0, "event_ts": T0}])
    put(store, online_fs, "merchant_risk", [{"merchant_id": "m|1", "risk": 0.9, "event_ts": T0}])
    put(
        store,
        online_fs,
        "pair",
        [{"user_id": 1, "merchant_id": "m|1", "txn_count": 4, "event_ts": T0}],
    )
    client = None
    if isinstance(store, RedisOnlineStore):
        client = redis.Redis.from_url(online_fs.config.online_store.url)
        client.config_resetstat()
    rows = [
        {"user_id": 1, "merchant_id": "m|1", "extra": "ignored"},
        {"user_id": 1, "merchant_id": "m"},
    ]
    response = read(
        online_fs, ["user_stats:amount", "merchant_risk:risk", "pair:txn_count"], rows, now=T0
    )
    assert response.to_dict() == {
        "user_id": [1, 1],
        "merchant_id": ["m|1", "m"],
        "amount": [1.0, 1.0],
        "risk": [0.9, None],
        "txn_count": [4, None],
    }
    if client is not None:
        stats = client.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 1  # one command for 3 views, 2 key kinds
        # nothing else was sent: the HMGETs ran inside the script, on the server
        assert set(stats) == {"cmdstat_evalsha", "cmdstat_hmget", "cmdstat_config|resetstat"}
        client.close()


def test_entity_rows_as_columns_duplicates_and_numpy_keys(online_fs: FeatureStore) -> None:
    put(online(online_fs), online_fs, "user_stats", [{"user_id": 5, "amount": 5.0, "event_ts": T0}])
    keys = np.array([5, 6, 5], dtype=np.int64)
    response = read(online_fs, ["user_stats:amount"], {"user_id": list(keys)}, now=T0)
    assert response.to_dict() == {"user_id": [5, 6, 5], "amount": [5.0, None, 5.0]}
    put(
        online(online_fs),
        online_fs,
        "merchant_risk",
        [{"merchant_id": "m", "risk": 0.5, "event_ts": T0}],
    )
    merchants = read(online_fs, ["merchant_risk:risk"], {"merchant_id": np.array(["m"])}, now=T0)
    assert merchants.to_dict() == {"merchant_id": ["m"], "risk": [0.5]}
    assert type(merchants.to_dict()["merchant_id"][0]) is str
    assert read(online_fs, ["user_stats:amount"], [], now=T0).to_dict() == {
        "user_id": [],
        "amount": [],
    }


def test_a_new_apply_is_seen_without_reopening(online_fs: FeatureStore) -> None:
    read(online_fs, ["user_stats:amount"], [{"user_id": 1}])
    extra = DEFINITIONS.replace('name="archive",', 'name="archive",\n    ttl=None,').replace(
        "online=False,", "online=True,"
    )
    (online_fs.repo_path / "definitions.py").write_text(extra)
    online_fs.apply()
    put(online(online_fs), online_fs, "archive", [{"user_id": 1, "old": 2.5, "event_ts": T0}])
    assert read(online_fs, ["archive:old"], [{"user_id": 1}]).to_dict()["old"] == [2.5]


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "rows", "error", "message"),
    [
        (
            ["user_stats:amout"],
            [{"user_id": 1}],
            UnknownFeatureError,
            "no feature 'amout'.*'user_stats:amount'",
        ),
        (
            ["user_stat:amount"],
            [{"user_id": 1}],
            UnknownFeatureError,
            "no feature view 'user_stat'.*'user_stats'",
        ),
        (
            [["user_stats:amount"]],
            [{"user_id": 1}],
            UnknownFeatureError,
            "is not of the form 'view:feature'",
        ),
        (
            ["amount"],
            [{"user_id": 1}],
            UnknownFeatureError,
            "'amount' is not of the form 'view:feature'",
        ),
        (
            ["user_stats:amount"],
            [{"user_id": 1}, {"userid": 2}],
            RetrievalError,
            "entity row 1 has no join key 'user_id'.*'userid'",
        ),
        (
            ["user_stats:amount"],
            {"uid": [1]},
            RetrievalError,
            "entity columns have no join key 'user_id'",
        ),
        (
            ["user_stats:amount"],
            [{"user_id": "1"}],
            RetrievalError,
            "join key 'user_id' is Int64 \\(int\\), got '1' \\(str\\)",
        ),
        (
            ["user_stats:amount"],
            [{"user_id": True}],
            RetrievalError,
            "join key 'user_id' is Int64 \\(int\\), got True",
        ),
        (
            ["user_stats:amount"],
            [{"user_id": np.bool_(True)}],
            RetrievalError,
            "join key 'user_id' is Int64 \\(int\\), got np.True_",
        ),
        (["user_stats:amount"], [{"user_id": 1.0}], RetrievalError, "join key 'user_id' is Int64"),
        (
            ["merchant_risk:risk"],
            [{"merchant_id": 1}],
            RetrievalError,
            "entity row 0: join key 'merchant_id' is String \\(str\\), got 1",
        ),
        (
            ["user_stats:amount"],
            {"user_id": [1, 2], "x": [1]},
            RetrievalError,
            "different lengths \\('user_id' has 2, 'x' has 1\\)",
        ),
        (
            ["user_stats:amount"],
            [{"user_id": 2**63}],
            RetrievalError,
            "join key 'user_id' is Int64, and 9223372036854775808 is outside its range",
        ),
        (
            ["user_stats:amount"],
            [{"user_id": np.uint64(2**63)}],
            RetrievalError,
            "outside its range",
        ),
        (
            ["merchant_risk:risk"],
            [{"merchant_id": "\ud800"}],
            RetrievalError,
            "join key 'merchant_id' is String",
        ),
        (["archive:old"], [{"user_id": 1}], RetrievalError, "'archive' is not served online"),
        (
            ["user_stats:city", "merchant_risk:city"],
            [{"user_id": 1, "merchant_id": "m"}],
            RetrievalError,
            "full_feature_names=True",
        ),
        (
            ["user_stats:amount", "user_stats:amount"],
            [{"user_id": 1}],
            RetrievalError,
            "requested twice",
        ),
        (None, [{"user_id": 1}], RetrievalError, "exactly one of features= or feature_service="),
        (["user_stats:amount"], None, RetrievalError, "pass entity_rows"),
        (["user_stats:amount"], [1], RetrievalError, "entity row 0 is int, not a mapping"),
        (
            ["user_stats:amount"],
            {"user_id": 1},
            RetrievalError,
            "entity column 'user_id' must be a list of values, one per entity row, not int 1; "
            "for one row write {'user_id': \\[value\\]}",
        ),
        (["user_stats:amount"], {"user_id": "12"}, RetrievalError, "'user_id' must be a list"),
        (["user_stats:amount"], {"user_id": np.int64(1)}, RetrievalError, "must be a list"),
        (["user_stats:amount"], {"user_id": np.array(1)}, RetrievalError, "must be a list"),
        (["user_stats:amount"], 7, RetrievalError, "entity_rows must be a list of mappings"),
        (["user_stats:amount"], [[1]], RetrievalError, "entity row 0 is list, not a mapping"),
        (
            iter(["user_stats:amount"]),
            [{"user_id": 1}],
            RetrievalError,
            "features must be a list of 'view:feature' references",
        ),
    ],
)
def test_bad_input_is_a_clear_error(
    online_fs: FeatureStore, features: Any, rows: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        read(online_fs, features, rows)


def test_unknown_service_is_named(online_fs: FeatureStore) -> None:
    with pytest.raises(UnknownFeatureError, match=r"no feature service 'scorin'.*'scoring'"):
        online_fs.get_online_features(feature_service="scorin", entity_rows=[{"user_id": 1}])


def test_now_must_be_a_datetime(online_fs: FeatureStore) -> None:
    with pytest.raises(RetrievalError, match="now must be a datetime"):
        read(online_fs, ["user_stats:amount"], [{"user_id": 1}], now="2026-01-01")
    put(online(online_fs), online_fs, "user_stats", [{"user_id": 1, "event_ts": T0 - DAY}])
    for now, status in ((T0, NULL_VALUE), (T0 + US, OUTSIDE_MAX_AGE)):
        naive = read(
            online_fs, ["user_stats:amount"], [{"user_id": 1}], now=now.replace(tzinfo=None)
        )
        assert naive.statuses["amount"] == [status]  # naive = UTC


def test_a_stale_service_object_is_refused_even_after_a_cached_read(
    online_fs: FeatureStore,
) -> None:
    """The read-plan cache must not let an object that differs from the applied service
    through once the same name was read: resolve() refuses it, every time."""
    from featurestore import FeatureService

    applied = online_fs.state.service("scoring")
    online_fs.get_online_features(feature_service=applied, entity_rows=[{"user_id": 1}])
    stale = FeatureService(name="scoring", features=[applied.projections[0]])
    with pytest.raises(RetrievalError, match="scoring"):
        online_fs.get_online_features(feature_service=stale, entity_rows=[{"user_id": 1}])


def test_entity_rows_from_generators_are_read_like_lists(online_fs: FeatureStore) -> None:
    put(online(online_fs), online_fs, "user_stats", [{"user_id": 2, "amount": 2.5, "event_ts": T0}])
    expected = {"user_id": [1, 2], "amount": [None, 2.5]}
    rows = ({"user_id": u} for u in (1, 2))
    assert read(online_fs, ["user_stats:amount"], rows, now=T0).to_dict() == expected
    columns = {"user_id": (u for u in (1, 2))}
    assert read(online_fs, ["user_stats:amount"], columns, now=T0).to_dict() == expected
    columns = {"user_id": range(1, 3)}
    assert read(online_fs, ["user_stats:amount"], columns, now=T0).to_dict() == expected


def test_a_feature_list_never_takes_the_cached_plan_of_a_service(online_fs: FeatureStore) -> None:
    """The plan cache keys a list of references apart from a service name: reading the
    service "scoring" first must not make ["service", "scoring"] a valid feature list."""
    online_fs.get_online_features(feature_service="scoring", entity_rows=[{"user_id": 1}])
    with pytest.raises(UnknownFeatureError, match="'service' is not of the form"):
        online_fs.get_online_features(["service", "scoring"], [{"user_id": 1}])
    with pytest.raises(UnknownFeatureError, match="'object' is not of the form"):
        online_fs.get_online_features(["object", "scoring"], [{"user_id": 1}])


# --- the async transport: the same read, awaited ------------------------------------------


def test_read_online_async_equals_read_online(online_fs: FeatureStore) -> None:
    import asyncio

    from featurestore.online.read import read_online, read_online_async

    put(
        online(online_fs),
        online_fs,
        "user_stats",
        [
            {"user_id": 1, "amount": 1.5, "count": 3, "city": "Oslo", "event_ts": T0},
            {"user_id": 3, "amount": 9.0, "count": 9, "city": "Old", "event_ts": T0 - 2 * DAY},
        ],
    )
    reader = online_fs._online_reader()
    plan, _ = reader.plan(["user_stats:amount", "user_stats:city"], False)
    rows = [{"user_id": u} for u in (1, 2, 3) * 700]  # more keys than one script call reads

    async def both() -> tuple[Any, Any]:
        awaited = await read_online_async(reader.store, plan, rows, T0)
        await reader.store.close_async()
        return awaited, read_online(online_fs._online_reader().store, plan, rows, T0)

    online_fs._reader = None  # close_async closed it: the second read opens a new one
    awaited, blocking = asyncio.run(both())
    assert awaited.to_dict() == blocking.to_dict() and awaited.statuses == blocking.statuses
    assert awaited.created_us == blocking.created_us


def test_read_async_survives_a_restart_and_names_a_dead_server(redis_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from featurestore import OnlineStoreUnavailable
    from featurestore.online.read import read_online_async

    server = redis_factory()
    fs = FeatureStore(
        write_repo(tmp_path, f"{{type: redis, url: '{server.url}', socket_timeout: 1}}")
    )
    fs.apply()
    reader = fs._online_reader()
    plan, _ = reader.plan(["user_stats:amount"], False)

    async def reads() -> list[Any]:
        out = [(await read_online_async(reader.store, plan, [{"user_id": 1}], T0)).statuses]
        server.stop()
        try:
            await read_online_async(reader.store, plan, [{"user_id": 1}], T0)
        except OnlineStoreUnavailable as exc:
            out.append(str(exc))
        server.start()  # empty and without the script: NOSCRIPT, loaded again
        out.append((await read_online_async(reader.store, plan, [{"user_id": 1}], T0)).statuses)
        await reader.store.close_async()
        return out

    first, error, after = asyncio.run(reads())
    assert first == after == {"amount": [NOT_FOUND]}
    assert "does not answer" in error and f"127.0.0.1:{server.port}" in error
