"""Redis Cluster faults, on the session's throwaway cluster (3 masters, 3 replicas,
cluster-node-timeout 1 s; tests/redis_cluster.py), whose nodes the tests kill and reshard.

- A master killed during a materialization: the run fails with a clear error naming the
  node, its watermark stays; after the failover every key holds a row of one of the two
  runs (nothing older came back over something newer than what was replicated), and a
  re-run leaves the store identical, key by key and byte by byte, to a clean run's.
- A master killed while a store is being read: every read fails fast, naming the node,
  never with a partial answer; then, with no help, reads answer again, and right, once a
  replica has taken over (the run before had waited for it to hold every row).
- Slots moving (``redis-cli --cluster reshard``) while a writer and readers run: no read
  fails or goes back in time, and after it every key holds the last row written.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from featurestore import FeatureStore, MaterializationError, OnlineStoreUnavailable
from featurestore.materialize import materialize_incremental
from featurestore.online.base import KeyGroup, open_online_store
from featurestore.online.redis_cluster import RedisClusterOnlineStore
from tests.online.rows import CODEC, identity, write
from tests.redis_cluster import RedisClusterNodes, dump_project
from tests.test_faults import BATCH, T0, USERS, KillAfter, make_repo, watermark, write_part

pytestmark = pytest.mark.cluster
HOUR1, HOUR2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
REFS = ["stats:rate", "stats:trips", "stats:city"]


def part_values(part: int, user: int) -> tuple[float, int, str]:
    """What tests/test_faults.write_part stores for ``user`` in ``part``."""
    import numpy as np

    return float(np.float32(user / 7 + part)), user * 1_000_003 + part, f"city-{user % 13}-{part}"


def read_users(store: FeatureStore, users: list[int]) -> list[tuple[Any, ...]]:
    got = store.get_online_features(REFS, {"user_id": users}, now=HOUR2).to_dict()
    return list(zip(got["rate"], got["trips"], got["city"], strict=True))


def test_a_master_killed_during_materialization(
    tmp_path: Path, redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    repo = tmp_path / "repo"
    store = make_repo(repo, cluster_url, cluster=True)
    store.materialize_incremental(HOUR1)
    before = watermark(store)
    write_part(repo, 1, hour=2)
    # the meta hash's master: the run's claim check, its watermark and a third of its rows
    victim = redis_cluster.master_of("faults#meta")
    slots = redis_cluster.topology()["masters"][victim.port]
    with open_online_store(store.config) as online:
        started = time.monotonic()
        with pytest.raises(MaterializationError) as error:
            materialize_incremental(
                store.config,
                store.state,
                online,
                HOUR2,
                progress=KillAfter(3, lambda: redis_cluster.kill(victim)),
                batch_rows=BATCH,
            )
        assert time.monotonic() - started < 10
    message = str(error.value)
    assert "'stats' failed" in message and "watermark did not move" in message
    assert victim.name in message  # its connection refused, or the cluster naming it failing
    assert isinstance(error.value.__cause__, OnlineStoreUnavailable)

    redis_cluster.wait_taken_over(victim, slots)
    assert watermark(store) == before
    # every key holds a whole row of one run: what a failover lost is the newer row of some
    # keys (not acknowledged by a replica), never a mix, never garbage
    got = read_users(store, list(range(USERS)))
    assert all(row in (part_values(0, u), part_values(1, u)) for u, row in enumerate(got))
    redis_cluster.start(victim)  # it comes back as a replica of the new master
    redis_cluster.wait_healthy()
    store.close()

    store.materialize_incremental(HOUR2)  # the re-run
    assert watermark(store).end == HOUR2
    assert read_users(store, list(range(USERS))) == [part_values(1, u) for u in range(USERS)]
    store.close()
    clean_repo = tmp_path / "clean"
    clean = make_repo(clean_repo, cluster_url, cluster=True, project="clean")
    clean.materialize_incremental(HOUR1)
    write_part(clean_repo, 1, hour=2)
    clean.materialize_incremental(HOUR2)
    clean.close()
    faulted = dump_project(cluster_url, "faults")
    assert faulted == dump_project(cluster_url, "clean")
    assert len(faulted) == USERS + 1


def test_a_master_killed_while_reading_fails_fast_then_recovers(
    tmp_path: Path, redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    store = make_repo(tmp_path / "repo", cluster_url, cluster=True)  # socket_timeout: 2
    store.materialize_incremental(HOUR1)  # waited for the replicas before its watermark
    users = list(range(0, USERS, 37))
    expected = read_users(store, users)
    assert expected == [part_values(0, u) for u in users]
    victim = redis_cluster.master_of("faults|user_id=i0")
    slots = redis_cluster.topology()["masters"][victim.port]
    redis_cluster.kill(victim)
    failures: list[str] = []
    deadline = time.monotonic() + 30
    while True:
        started = time.monotonic()
        try:
            got = read_users(store, users)
        except OnlineStoreUnavailable as exc:
            assert time.monotonic() - started < 2.5, "a read must fail within socket_timeout"
            failures.append(str(exc))
            assert time.monotonic() < deadline, "reads did not recover after the failover"
            time.sleep(0.05)
            continue
        assert got == expected  # whole and right, nothing lost in the failover
        break
    assert failures, "the reads right after the kill must fail: their node is gone"
    assert all(victim.name in failure for failure in failures), failures
    assert redis_cluster.wait_taken_over(victim, slots).port != victim.port
    redis_cluster.start(victim)
    redis_cluster.wait_healthy()
    store.close()


def test_resharding_during_reads_and_writes_loses_nothing(
    redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    users = list(range(3_000))
    keys = [f"user_id=i{u}" for u in users]
    source, target = redis_cluster.masters()[:2]
    store = RedisClusterOnlineStore(cluster_url, "proj")
    claim = store.claim(identity("v"))
    done = threading.Event()
    rounds = [0]  # the last round completely written
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not done.is_set() or rounds[0] < 3:
                n = rounds[0] + 1
                write(store, claim, [(u, float(n), T0 + timedelta(seconds=n), None) for u in users])
                rounds[0] = n
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        seen = [0.0] * len(users)
        try:
            while not done.is_set():
                rows = store.read([KeyGroup((identity("v"),), keys)])
                ceiling = rounds[0] + 1  # the round being written may show already
                for i, row in enumerate(rows):
                    value = 0.0 if row[0] is None else CODEC.decode(row[0])[2][0]
                    assert seen[i] <= value <= ceiling, (users[i], seen[i], value, ceiling)
                    seen[i] = value
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (writer, reader, reader)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while rounds[0] < 2 and not errors and time.monotonic() < deadline:
        time.sleep(0.02)
    before = redis_cluster.owners([f"proj|{k}" for k in keys])
    redis_cluster.reshard(source, target, 300)
    at_reshard = rounds[0]
    while rounds[0] < at_reshard + 2 and not errors and time.monotonic() < deadline + 20:
        time.sleep(0.02)
    done.set()
    for thread in threads:
        thread.join(60)
    assert errors == []
    after = redis_cluster.owners([f"proj|{k}" for k in keys])
    moved = sum(
        1 for a, b in zip(before, after, strict=True) if (a, b) == (source.port, target.port)
    )
    assert moved > 20  # keys of this test moved while it wrote and read them
    final = store.read([KeyGroup((identity("v"),), keys)])
    assert [CODEC.decode(r[0])[2][0] for r in final] == [float(rounds[0])] * len(users)
    store.close()
