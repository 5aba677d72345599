"""Both online stores: never regress (atomically), watermarks, drop_view, and Redis failures.

Real SQLite files and real redis-server processes (throwaway, on their own ports).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rows import CODEC, T0, TS, amounts, identity, write

from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.config import FeatureLogConfig, RepoConfig, SqliteConfig, load_config
from featurestore.definitions import Field
from featurestore.errors import OnlineStoreError, OnlineStoreUnavailable
from featurestore.online.base import (
    Claim,
    KeyGroup,
    OnlineStore,
    ViewIdentity,
    Watermark,
    open_online_store,
)
from featurestore.online.codec import RowCodec
from featurestore.online.redis import RedisOnlineStore, mask_url
from featurestore.online.sqlite import SqliteOnlineStore
from featurestore.types import Float32, Int64

# --- never regress ------------------------------------------------------------------------


def test_an_older_row_never_overwrites_a_newer_one(store: OnlineStore) -> None:
    day = timedelta(days=1)
    assert write(store, "v", [(1, 2.0, T0 + day, None), (2, 2.0, T0, T0)]) == 2
    assert write(store, "v", [(1, 1.0, T0, None), (2, 1.0, T0, T0 - day)]) == 0
    assert amounts(store, "v", [1, 2]) == [2.0, 2.0]


def test_an_equal_row_is_rewritten_and_a_newer_one_wins(store: OnlineStore) -> None:
    write(store, "v", [(1, 1.0, T0, T0), (2, 1.0, T0, None)])
    # equal (event, created): written (materialization chose it with the join's tie-break)
    assert write(store, "v", [(1, 5.0, T0, T0), (2, 5.0, T0, None)]) == 2
    assert amounts(store, "v", [1, 2]) == [5.0, 5.0]
    # same event, later created; and a created time beats a missing one
    assert write(store, "v", [(1, 6.0, T0, T0 + timedelta(microseconds=1)), (2, 6.0, T0, T0)]) == 2
    assert amounts(store, "v", [1, 2]) == [6.0, 6.0]
    # a later event wins even with an older (or no) created time
    assert write(store, "v", [(1, 7.0, T0 + timedelta(microseconds=1), None)]) == 1
    assert amounts(store, "v", [1]) == [7.0]


def test_rewriting_the_same_rows_is_idempotent(store: OnlineStore) -> None:
    rows = [(k, float(k), T0 + timedelta(seconds=k), None) for k in range(50)]
    assert write(store, "v", rows) == 50
    first = store.read([KeyGroup((identity("v"),), [f"user_id=i{k}" for k in range(50)])])
    assert write(store, "v", rows) == 50
    assert store.read([KeyGroup((identity("v"),), [f"user_id=i{k}" for k in range(50)])]) == first


def test_concurrent_writers_leave_the_newest_row_per_key(store: OnlineStore) -> None:
    """Four threads race on the same keys; the check-and-set is atomic, so the newest wins."""
    keys = list(range(300))
    rng = random.Random(7)
    plans = [
        [
            # unique events per key across writers (+ writer µs), so the winner is defined
            (
                k,
                float(writer * 10_000 + k),
                T0 + timedelta(seconds=rng.randrange(1000), microseconds=writer),
                None,
            )
            for k in keys
        ]
        for writer in range(4)
    ]
    newest = {k: max((rows[k] for rows in plans), key=lambda r: r[2])[1] for k in keys}
    threads = [threading.Thread(target=write, args=(store, "v", rows)) for rows in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert amounts(store, "v", keys) == [newest[k] for k in keys]


# --- reads -----------------------------------------------------------------------------


def test_concurrent_readers_each_get_their_own_answers(store: OnlineStore) -> None:
    write(store, "v", [(k, float(k), T0, None) for k in range(64)])
    failures: list[str] = []

    def reader(offset: int) -> None:
        for n in range(100):
            keys = [(offset + n + i) % 64 for i in range(5)]
            if amounts(store, "v", keys) != [float(k) for k in keys]:
                failures.append(f"reader {offset}, call {n}")

    threads = [threading.Thread(target=reader, args=(offset,)) for offset in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_read_returns_rows_per_group_key_and_view_in_order(store: OnlineStore) -> None:
    write(store, "a", [(1, 1.0, T0, None), (2, 2.0, T0, None)])
    write(store, "b", [(2, 20.0, T0, None)])
    rows = store.read(
        [
            KeyGroup(
                (identity("a"), identity("b")),
                ["user_id=i2", "user_id=i3", "user_id=i1", "user_id=i2"],
            ),
            KeyGroup((identity("b"),), ["user_id=i2"]),
        ]
    )
    decoded = [[None if r is None else CODEC.decode(r)[2][0] for r in key] for key in rows]
    assert decoded == [[2.0, 20.0], [None, None], [1.0, None], [2.0, 20.0], [20.0]]
    assert store.read([]) == []


def test_large_reads_keep_their_order_across_script_batches(store: OnlineStore) -> None:
    n = 4_500  # more keys than one Redis read script call takes
    write(store, "a", [(k, float(k), T0, None) for k in range(n)])
    write(store, "b", [(k, float(-k), T0, None) for k in range(0, n, 2)])
    keys = [f"user_id=i{k}" for k in range(n)]
    rows = store.read(
        [
            KeyGroup((identity("a"),), keys[:10]),
            KeyGroup((identity("a"), identity("b")), keys[::-1]),
        ]
    )
    assert len(rows) == 10 + n
    assert [CODEC.decode(r[0])[2][0] for r in rows[:10]] == [float(k) for k in range(10)]
    for k, (a, b) in zip(range(n - 1, -1, -1), rows[10:], strict=True):
        assert CODEC.decode(a)[2][0] == float(k)
        assert (b is None) if k % 2 else CODEC.decode(b)[2][0] == float(-k)


def test_views_keyed_by_two_entities(store: OnlineStore) -> None:
    features = [Field(name="txn", dtype=Int64)]
    data = pa.RecordBatch.from_pydict(
        {
            "user_id": pa.array([1, 1], pa.int64()),
            "merchant": pa.array(["m|1", "m"], pa.string()),
            "txn": pa.array([10, 20], pa.int64()),
            EVENT_TS: pa.array([T0, T0], TS),
        }
    )
    codec = RowCodec(features)
    pair = ViewIdentity("pair", "fp", codec.layout)
    assert store.write_rows(store.claim(pair), data, ["user_id", "merchant"], features) == 2
    rows = store.read(
        [KeyGroup((pair,), ["merchant=s1:m|user_id=i1", "merchant=s3:m|1|user_id=i1"])]
    )
    assert [codec.decode(r[0])[2] for r in rows] == [[20], [10]]


# --- watermarks and drop_view ------------------------------------------------------------------


def test_watermarks_round_trip_per_view(store: OnlineStore) -> None:
    assert store.get_watermark("v") is None
    v, w = store.claim(identity("v")), store.claim(identity("w"))
    assert store.get_watermark("v") is None
    mark = Watermark(T0 + timedelta(microseconds=123), T0 - timedelta(days=3, microseconds=7))
    store.set_watermark(v, mark)
    store.set_watermark(w, Watermark(T0, None))
    assert store.get_watermark("v") == mark
    assert store.get_watermark("w") == Watermark(T0, None)
    later = Watermark(T0 + timedelta(days=1), None)
    store.set_watermark(v, later)
    assert store.get_watermark("v") == later
    assert store.claim(identity("v")) == v
    assert store.get_watermark("v") == later


def test_drop_view_removes_its_rows_and_watermark_only(store: OnlineStore) -> None:
    n = 5_000  # several SCAN batches in Redis
    rows = [(k, float(k), T0, None) for k in range(n)]
    write(store, "a", rows)
    write(store, "b", rows[: n // 2])
    store.set_watermark(store.claim(identity("a")), Watermark(T0, None))
    store.set_watermark(store.claim(identity("b")), Watermark(T0, T0))
    assert store.drop_view("a") == n
    assert amounts(store, "a", [0, n - 1]) == [None, None]
    assert amounts(store, "b", [0, n // 2 - 1]) == [0.0, float(n // 2 - 1)]
    assert store.get_watermark("a") is None
    assert store.get_watermark("b") == Watermark(T0, T0)
    assert store.drop_view("a") == 0  # idempotent


def test_redis_drop_view_removes_emptied_hashes(redis_url: str) -> None:
    store = RedisOnlineStore(redis_url, "proj")
    other = RedisOnlineStore(redis_url, "other")
    try:
        write(store, "a", [(k, 1.0, T0, None) for k in range(100)])
        write(store, "b", [(k, 1.0, T0, None) for k in range(10)])
        write(other, "a", [(k, 1.0, T0, None) for k in range(10)])
        store.drop_view("a")
        client = redis.Redis.from_url(redis_url)
        assert sorted(client.scan_iter("proj|*")) == sorted(
            f"proj|user_id=i{k}".encode() for k in range(10)
        )
        b = store.claim(identity("b"))
        assert client.hkeys("proj|user_id=i0") == [str(b.generation).encode()]
        assert client.hget("proj#meta", "view:a") is None
        assert len(list(client.scan_iter("other|*"))) == 10  # another project is untouched
        client.close()
    finally:
        store.close()
        other.close()


def test_a_dropped_view_is_gone_even_if_the_drop_was_interrupted(redis_url: str) -> None:
    """Killed after its script (generation retired), before deleting rows: still a drop."""
    store = RedisOnlineStore(redis_url, "proj")
    client = redis.Redis.from_url(redis_url)
    try:
        write(store, "a", [(k, 1.0, T0 + timedelta(days=1), None) for k in range(50)])
        tag = str(store.claim(identity("a")).generation).encode()
        client.hset("proj#meta", b"retired:" + tag, "a")  # what the drop's script does
        client.hdel("proj#meta", "view:a", "watermark:a")
        assert amounts(store, "a", [0, 49]) == [None, None]
        # older rows of the new definition are not blocked by the retired, newer ones
        assert write(store, "a", [(k, 2.0, T0, None) for k in range(10)]) == 10
        assert amounts(store, "a", [0, 10]) == [2.0, None]
        assert store.drop_view("b") == 50  # any later drop collects what was left
        assert all(tag not in client.hkeys(f"proj|user_id=i{k}") for k in range(50))
        assert amounts(store, "a", [0]) == [2.0]
        assert [f for f in client.hkeys("proj#meta") if f.startswith(b"retired:")] == []
    finally:
        client.close()
        store.close()


# --- Redis: layout, memory, restarts, failures -------------------------------------------------


def test_redis_layout_is_one_small_listpack_hash_per_entity(redis_url: str) -> None:
    """Feast needs ~264 bytes per key for 6 features in 2 views; we must not need more."""
    store = RedisOnlineStore(redis_url, "proj")
    features = [Field(name=f"f{i}", dtype=Float32 if i < 2 else Int64) for i in range(3)]
    data = pa.RecordBatch.from_pydict(
        {
            "driver_id": pa.array([1001], pa.int64()),
            "f0": pa.array([0.5], pa.float32()),
            "f1": pa.array([0.25], pa.float32()),
            "f2": pa.array([7], pa.int64()),
            EVENT_TS: pa.array([T0], TS),
            CREATED_TS: pa.array([T0], TS),
        }
    )
    layout = RowCodec(features).layout
    for view in ("driver_hourly_stats", "driver_daily_stats"):
        claim = store.claim(ViewIdentity(view, f"fp-{view}", layout))
        store.write_rows(claim, data, ["driver_id"], features)
    client = redis.Redis.from_url(redis_url)
    key = "proj|driver_id=i1001"
    assert sorted(client.keys("*")) == [b"proj#meta", key.encode()]
    meta = client.hgetall("proj#meta")
    assert len(meta.pop(b"epoch")) == 16  # the first claim's (a restarted server's is new)
    assert meta == {
        b"view:driver_hourly_stats": f"fp-driver_hourly_stats:{layout}:1".encode(),
        b"view:driver_daily_stats": f"fp-driver_daily_stats:{layout}:2".encode(),
        b"next_tag": b"2",
    }
    assert sorted(client.hkeys(key)) == [b"1", b"2"]
    assert client.object("encoding", key) == b"listpack"
    assert client.memory_usage(key) < 200
    client.close()
    store.close()


def test_scripts_are_reloaded_after_a_restart(redis_factory: Any) -> None:
    server = redis_factory()
    store = RedisOnlineStore(server.url, "proj")
    try:
        assert write(store, "v", [(1, 1.0, T0, None)]) == 1
        server.stop()
        server.start()  # empty, and without our scripts: NOSCRIPT, then load, then run
        assert amounts(store, "v", [1]) == [None]
        assert write(store, "v", [(1, 2.0, T0, None)]) == 1
        server.stop()
        server.start()
        assert write(store, "v", [(1, 3.0, T0, None)]) == 1
        assert amounts(store, "v", [1]) == [3.0]
        server.stop()
        server.start()
        assert amounts(store, "v", list(range(5_000))) == [None] * 5_000  # pipelined reads
    finally:
        store.close()


def test_unreachable_redis_is_a_quick_clear_error() -> None:
    port = closed_port()
    store = RedisOnlineStore(f"redis://:hunter2@127.0.0.1:{port}/0", "proj", socket_timeout=1)
    for action in (
        lambda: store.read([KeyGroup((identity("v"),), ["user_id=i1"])]),
        lambda: write(store, "v", [(1, 1.0, T0, None)]),
        lambda: store.get_watermark("v"),
        store.ping,
    ):
        started = time.monotonic()
        with pytest.raises(OnlineStoreUnavailable) as caught:
            action()
        assert time.monotonic() - started < 3
        message = str(caught.value)
        assert f"redis://:***@127.0.0.1:{port}/0" in message
        assert "hunter2" not in message
    store.close()


TIMEOUT = 0.5  # socket_timeout of the tests below
MARGIN = 0.45  # what the test may add to one timeout: less than a second timeout


def assert_each_call_waits_one_timeout(store: RedisOnlineStore) -> None:
    """Every call that talks to Redis gives up after one ``socket_timeout``: never retried."""
    claim = Claim(identity("v"), 1)
    calls = {
        "ping": store.ping,
        "read": lambda: amounts(store, "v", [1]),
        "claim": lambda: store.claim(identity("v")),
        "write": lambda: write(store, claim, [(1, 1.0, T0, None)]),
        "get_watermark": lambda: store.get_watermark("v"),
        "set_watermark": lambda: store.set_watermark(claim, Watermark(T0, None)),
        "drop_view": lambda: store.drop_view("v"),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(OnlineStoreUnavailable, match="does not answer") as caught:
            call()
        took = time.monotonic() - started
        assert TIMEOUT * 0.9 <= took < TIMEOUT + MARGIN, f"{name} took {took:.2f} s"
        assert "Timeout" in str(caught.value)


def test_a_server_that_never_answers_costs_one_socket_timeout() -> None:
    """A listener that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        store = RedisOnlineStore(f"redis://127.0.0.1:{port}/0", "proj", socket_timeout=TIMEOUT)
        assert_each_call_waits_one_timeout(store)
        store.close()


def test_a_stopped_server_costs_one_socket_timeout_and_is_used_again_after(
    redis_factory: Any,
) -> None:
    """A real redis-server of this test's own, frozen with SIGSTOP while the store holds an
    open connection, then resumed."""
    server = redis_factory()
    store = RedisOnlineStore(server.url, "proj", socket_timeout=TIMEOUT)
    try:
        write(store, "v", [(1, 1.0, T0, None)])
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            assert_each_call_waits_one_timeout(store)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        store.ping()  # the timed-out connection was dropped; a new one works
        assert amounts(store, "v", [2]) == [None]
    finally:
        store.close()


def test_a_restarted_server_is_retried_once_at_once(redis_factory: Any, tmp_path: Path) -> None:
    """A connection reset (the server restarted between two calls) is not an outage: the
    call reconnects once, immediately, and succeeds."""
    server = redis_factory("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))
    store = RedisOnlineStore(server.url, "proj", socket_timeout=TIMEOUT)
    try:
        claim = store.claim(identity("v"))
        write(store, claim, [(1, 1.0, T0, None)])
        server.stop()
        server.start()  # same port, same data (append-only file)
        started = time.monotonic()
        assert write(store, claim, [(1, 2.0, T0, None)]) == 1
        assert amounts(store, "v", [1]) == [2.0]
        assert time.monotonic() - started < TIMEOUT
    finally:
        store.close()


def test_a_password_protected_server_works_through_its_url(redis_factory: Any) -> None:
    server = redis_factory(password="s3cret pw")
    store = RedisOnlineStore(server.url.replace("s3cret pw", "s3cret%20pw"), "proj")
    try:
        store.ping()
        assert write(store, "v", [(1, 1.5, T0, None)]) == 1
        assert amounts(store, "v", [1]) == [1.5]
    finally:
        store.close()
    for url in (f"redis://:nope@127.0.0.1:{server.port}/0", f"redis://127.0.0.1:{server.port}/0"):
        wrong = RedisOnlineStore(url, "proj")
        with pytest.raises(OnlineStoreUnavailable, match="refused the credentials") as caught:
            wrong.ping()
        assert "nope" not in str(caught.value)
        wrong.close()


def test_a_tls_server_works_through_a_rediss_url(tmp_path: Path, redis_factory: Any) -> None:
    """A real TLS listener (self-signed certificate for 127.0.0.1), verified by the client."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls_port = closed_port()
    redis_factory(
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
    store = RedisOnlineStore(url, "proj")
    try:
        store.ping()
        assert store._client.connection_pool.connection_class.__name__ == "SSLConnection"
        assert write(store, "v", [(1, 1.5, T0, None)]) == 1
        assert amounts(store, "v", [1]) == [1.5]
    finally:
        store.close()
    untrusted = RedisOnlineStore(f"rediss://127.0.0.1:{tls_port}/0", "proj")  # no CA given
    with pytest.raises(OnlineStoreUnavailable, match="does not answer"):
        untrusted.ping()
    untrusted.close()


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("redis://user:pw@host:1/2") == "redis://user:***@host:1/2"
    assert mask_url("redis://host:1/0") == "redis://host:1/0"


# --- open_online_store ----------------------------------------------------------------------


def test_open_online_store_follows_the_config_and_never_falls_back(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "featurestore.yaml").write_text(
        f"project: p\nonline_store: {{type: redis, url: '{redis_url}'}}\n"
    )
    with open_online_store(load_config(tmp_path)) as opened:
        assert isinstance(opened, RedisOnlineStore)
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", f"redis://127.0.0.1:{closed_port()}/0")
    with pytest.raises(OnlineStoreUnavailable, match="does not answer"):
        open_online_store(load_config(tmp_path))
    sqlite_config = RepoConfig(
        repo_path=tmp_path,
        project="p",
        registry_path=tmp_path / "registry.json",
        offline_store=load_config(tmp_path).offline_store,
        online_store=SqliteConfig(path=tmp_path / "sub" / "online.db"),
        feature_log=FeatureLogConfig(path=tmp_path / "log"),
    )
    with open_online_store(sqlite_config) as opened:
        assert isinstance(opened, SqliteOnlineStore)
    assert (tmp_path / "sub" / "online.db").exists()


def test_an_unopenable_sqlite_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OnlineStoreUnavailable, match="cannot open the SQLite online store"):
        SqliteOnlineStore(tmp_path / "file" / "online.db", "proj")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


moments = st.integers(0, 3).map(lambda s: T0 + timedelta(seconds=s))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(moments, st.none() | moments), min_size=1, max_size=8))
def test_any_sequence_of_writes_keeps_the_greatest_version(
    store: OnlineStore, versions: list[tuple[datetime, datetime | None]]
) -> None:
    """Whatever the order, the stored row is the last written of the greatest (event, created)."""
    store.drop_view("v")
    for i, (event, created) in enumerate(versions):
        write(store, "v", [(1, float(i), event, created)])

    def order(v: tuple[datetime, datetime | None]) -> tuple[datetime, datetime]:
        return v[0], v[1] or datetime.min.replace(tzinfo=UTC)

    best = max(order(v) for v in versions)
    winner = max(i for i, v in enumerate(versions) if order(v) == best)
    assert amounts(store, "v", [1]) == [float(winner)]


def test_a_foreign_value_under_our_key_is_a_clear_error(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("proj|user_id=i1", "not a hash")
    store = RedisOnlineStore(redis_url, "proj")
    with pytest.raises(OnlineStoreError, match=r"refused to write rows: .*WRONGTYPE"):
        write(store, "v", [(1, 1.0, T0, None)])
    with pytest.raises(OnlineStoreError, match=r"refused to read rows: .*WRONGTYPE"):
        amounts(store, "v", [1])
    store.close()
    client.close()


def test_a_locked_sqlite_file_is_a_clear_error_and_the_store_stays_usable(
    tmp_path: Path,
) -> None:
    """Another process holding the SQLite file's write lock past the busy timeout (a long
    transaction, a backup tool) makes every write an ``OnlineStoreUnavailable`` naming the
    file, not a raw ``sqlite3.OperationalError`` traceback; once it lets go, writes work."""
    import sqlite3

    path = tmp_path / "online.db"
    store = SqliteOnlineStore(path, "proj", timeout=0.2)
    claim = store.claim(identity("v"))
    write(store, claim, [(1, 1.0, T0, T0)])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        for attempt in (
            lambda: write(store, claim, [(1, 2.0, T0 + timedelta(days=1), T0)]),
            lambda: store.claim(identity("w")),
            lambda: store.set_watermark(claim, Watermark(T0, T0)),
            lambda: store.drop_view("v"),
        ):
            with pytest.raises(OnlineStoreUnavailable, match=r"online\.db.*locked"):
                attempt()
        # readers are not blocked (WAL): they see the last committed rows
        assert amounts(store, "v", [1]) == [1.0]
        assert store.get_watermark("v") is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert write(store, claim, [(1, 2.0, T0 + timedelta(days=1), T0)]) == 1
    assert amounts(store, "v", [1]) == [2.0]
    store.close()


def test_a_claim_from_before_a_redis_restart_is_refused_after_a_new_claim(
    redis_factory: Any,
) -> None:
    """A server restarted empty mid-run, then the view claimed again (a push, another run):
    the new claim must not look like the old run's, or the old run writes its remaining
    batches and moves the watermark over rows that were lost with the server (incremental
    runs would then skip them for good)."""
    server = redis_factory()
    run = RedisOnlineStore(server.url, "proj")
    claim = run.claim(identity("v"))
    write(run, claim, [(1, 1.0, T0, T0)])  # the run's first batch: lost with the server
    server.stop()
    server.start()  # empty (no persistence)
    other = RedisOnlineStore(server.url, "proj")
    write(other, "v", [(2, 2.0, T0, T0)])  # a push claims the view on the empty server
    with pytest.raises(OnlineStoreError, match="changed under this run"):
        write(run, claim, [(3, 3.0, T0, T0)])
    with pytest.raises(OnlineStoreError, match="changed under this run"):
        run.set_watermark(claim, Watermark(T0 + timedelta(days=1), T0))
    assert other.get_watermark("v") is None
    assert amounts(other, "v", [1, 2, 3]) == [None, 2.0, None]
    run.close()
    other.close()
