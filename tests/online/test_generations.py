"""Generations, on both stores: a view's online data is tied to the definition it was written for.

A claim continues data of the same (fingerprint, layout) and replaces any other; writes and
watermarks of a claim that is no longer current are refused (a generation is never given
twice); a read returns only rows of the identity it asks for, and counts the others; data
written before layout ids is refused until materialized again. Real SQLite files and real
redis-server processes.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from rows import CODEC, T0, amounts, identity, write

from featurestore.errors import OnlineStoreError
from featurestore.online.base import KeyGroup, OnlineStore, ViewIdentity, Watermark
from featurestore.online.redis import RedisOnlineStore
from featurestore.online.sqlite import SqliteOnlineStore

A = identity("v", "fingerprint-a")
B = identity("v", "fingerprint-b")  # the same view after a fingerprint change
RELAID = ViewIdentity("v", "fingerprint-a", "0123456789abcdef")  # ... or a layout change
ROWS = [(k, k + 0.5, T0, None) for k in range(3)]


def test_a_claim_continues_its_identity_and_replaces_any_other(store: OnlineStore) -> None:
    first = store.claim(A)
    assert store.get_watermark("v") is None
    write(store, first, ROWS)
    store.set_watermark(first, Watermark(T0, None))
    again = store.claim(A)  # a later run of the same definition continues the data
    assert again == first and store.get_watermark("v") == Watermark(T0, None)
    assert amounts(store, A, [0, 1, 2]) == [0.5, 1.5, 2.5]
    for other in (B, RELAID):
        replaced = store.claim(other)  # the registry says otherwise: the store follows
        assert replaced.generation > first.generation
        assert store.get_watermark("v") is None
        assert amounts(store, other, [0, 1, 2]) == [None] * 3
        assert amounts(store, A, [0, 1, 2]) == [None] * 3
        first = replaced
    assert store.refused_rows == {}  # nothing was left to refuse


def test_a_replaced_claim_writes_nothing_and_never_moves_the_watermark(
    store: OnlineStore,
) -> None:
    run = store.claim(A)
    assert write(store, run, ROWS) == 3
    store.drop_view("v")  # what apply does to a changed view
    with pytest.raises(OnlineStoreError, match=r"'v' changed under this run.*no data of it"):
        write(store, run, ROWS)
    with pytest.raises(OnlineStoreError, match="changed under this run"):
        store.set_watermark(run, Watermark(T0, None))
    assert store.get_watermark("v") is None
    # the same definition claimed again gets a new generation: the old run stays refused
    new = store.claim(A)
    assert new.generation != run.generation
    with pytest.raises(OnlineStoreError, match=f"now holds generation {new.generation}"):
        write(store, run, [(9, 9.5, T0 + timedelta(days=1), None)])
    assert amounts(store, A, [0, 9]) == [None, None]
    assert write(store, new, ROWS[:1]) == 1
    store.claim(B)  # another definition replaces it, between two writes of a run
    with pytest.raises(OnlineStoreError, match="changed under this run"):
        write(store, new, ROWS)
    assert amounts(store, B, [0, 1]) == [None, None]


def test_rows_of_another_definition_are_refused_and_counted(store: OnlineStore) -> None:
    write(store, store.claim(A), ROWS)
    write(store, store.claim(identity("w")), ROWS[:2])
    assert amounts(store, B, [0, 1, 2, 3]) == [None] * 4  # a reader whose registry differs
    assert store.refused_rows == {"v": 3}
    assert amounts(store, RELAID, [2, 2]) == [None, None]
    assert store.refused_rows == {"v": 5}
    # in one request with another view: only the stale view's rows are refused
    rows = store.read([KeyGroup((B, identity("w")), ["user_id=i0", "user_id=i1", "user_id=i2"])])
    decoded = [[None if r is None else CODEC.decode(r)[2][0] for r in key] for key in rows]
    assert decoded == [[None, 0.5], [None, 1.5], [None, None]]
    assert store.refused_rows == {"v": 8}
    assert amounts(store, A, [0, 1, 2]) == [0.5, 1.5, 2.5]
    assert store.refused_rows == {"v": 8}


def test_a_write_racing_an_apply_never_lands_in_the_new_data(store: OnlineStore) -> None:
    """A writer thread keeps writing with its claim; meanwhile the view is dropped and
    claimed for another definition, which writes its own rows: none of the writer's rows
    ever reads under the new definition, and the writer is refused from then on."""
    run = store.claim(A)
    wrote_once, replaced = threading.Event(), threading.Event()
    refused: list[Exception] = []

    def writer() -> None:
        for n in range(200):
            rows = [(k, -1.0, T0 + timedelta(seconds=n), None) for k in range(50)]
            try:
                write(store, run, rows)
            except OnlineStoreError as exc:
                refused.append(exc)
                return
            wrote_once.set()
            if n == 5:
                replaced.wait(10)  # go on writing only once the apply happened

    thread = threading.Thread(target=writer)
    thread.start()
    assert wrote_once.wait(10)
    store.drop_view("v")
    new = store.claim(B)
    write(store, new, [(k, float(k), T0, None) for k in range(50)])
    replaced.set()
    thread.join(30)
    assert len(refused) == 1 and "changed under this run" in str(refused[0])
    assert amounts(store, B, list(range(50))) == [float(k) for k in range(50)]


# --- data written before layout ids ----------------------------------------------------------


def test_redis_data_from_before_layout_ids_is_refused_until_materialized_again(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    # what an earlier version left: a tag per view, rows under it, a watermark
    client.hset("proj#meta", mapping={"tag:v": "1", "tag:w": "2", "next_tag": "2"})
    client.hset("proj#meta", "watermark:v", "1000:")
    for k in range(3):
        client.hset(f"proj|user_id=i{k}", mapping={"1": CODEC.encode(T0, None, [k + 0.5, k])})
    client.hset("proj|user_id=i0", "2", CODEC.encode(T0, None, [7.5, 7]))
    store = RedisOnlineStore(redis_url, "proj")
    try:
        with pytest.raises(OnlineStoreError, match=r"'v' .*earlier featurestore version") as err:
            amounts(store, "v", [0])
        assert "Materialize the view again" in str(err.value)
        assert "materialize-incremental now --views v" in str(err.value)
        claim = store.claim(identity("v"))  # what the next materialization does first
        assert claim.generation == 3  # tags from before are never given again
        assert store.get_watermark("v") is None
        assert client.hget("proj#meta", "tag:v") is None
        assert [client.hkeys(f"proj|user_id=i{k}") for k in range(3)] == [[b"2"], [], []]
        assert amounts(store, "v", [0]) == [None]  # the old rows are gone, not decoded
        write(store, claim, ROWS)
        assert amounts(store, "v", [0, 1, 2]) == [0.5, 1.5, 2.5]
        with pytest.raises(OnlineStoreError, match=r"'w' .*earlier featurestore version"):
            amounts(store, "w", [0])
        assert store.drop_view("w") == 1  # apply dropping it also clears the refusal
        assert amounts(store, "w", [0]) == [None]
        assert [f for f in client.hkeys("proj#meta") if f.startswith(b"retired:")] == []
    finally:
        store.close()
        client.close()


LEGACY_SCHEMA = """
CREATE TABLE rows (view TEXT NOT NULL, entity TEXT NOT NULL, row BLOB NOT NULL,
                   PRIMARY KEY (view, entity)) WITHOUT ROWID;
CREATE TABLE watermarks (view TEXT PRIMARY KEY, end_us INTEGER NOT NULL, max_created_us INTEGER);
"""


def test_sqlite_data_from_before_layout_ids_is_refused_until_materialized_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "online.db"
    old = sqlite3.connect(path)
    old.executescript(LEGACY_SCHEMA)
    old.executemany(
        "INSERT INTO rows VALUES (?, ?, ?)",
        [("v", f"user_id=i{k}", CODEC.encode(T0, None, [k + 0.5, k])) for k in range(3)]
        + [("w", "user_id=i0", CODEC.encode(T0, None, [7.5, 7]))],
    )
    old.execute("INSERT INTO watermarks VALUES ('v', 1000, NULL)")
    old.commit()
    old.close()
    store = SqliteOnlineStore(path, "proj")
    try:
        with pytest.raises(OnlineStoreError, match=r"'v' .*earlier featurestore version"):
            amounts(store, "v", [0])
        assert amounts(store, "x", [0]) == [None]  # a view the old tables do not hold
        claim = store.claim(identity("v"))
        assert store.get_watermark("v") is None
        assert amounts(store, "v", [0]) == [None]
        write(store, claim, ROWS)
        assert amounts(store, "v", [0, 1, 2]) == [0.5, 1.5, 2.5]
        with pytest.raises(OnlineStoreError, match=r"'w' .*earlier featurestore version"):
            amounts(store, "w", [0])
        assert store.drop_view("w") == 1
        assert amounts(store, "w", [0]) == [None]
    finally:
        store.close()
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")
    assert {name for (name,) in tables} == {"views", "view_rows", "view_tiles", "sqlite_sequence"}
