"""What only Redis Cluster needs proving (the store contract itself runs on the cluster through
the ``store`` and ``online_fs`` fixtures): the key layout and slot placement, one call per
master per read, stale writes leaving nothing behind, the collection of dead generations,
WAIT before a watermark, configuration mistakes, passwords, TLS and startup nodes.

Everything runs on the session's throwaway cluster (tests/redis_cluster.py: 3 masters,
3 replicas, password-protected) or on clusters and servers of the test's own.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rows import CODEC, T0, amounts, identity, write

from featurestore.config import load_config
from featurestore.errors import ConfigError, OnlineStoreError, OnlineStoreUnavailable
from featurestore.online.base import KeyGroup, Watermark, open_online_store
from featurestore.online.redis import RedisOnlineStore
from featurestore.online.redis_cluster import RedisClusterOnlineStore
from tests.redis_cluster import RedisClusterNodes, dump_project, until

pytestmark = pytest.mark.cluster


def cluster_store(url: str, project: str = "proj", **kwargs: Any) -> RedisClusterOnlineStore:
    return RedisClusterOnlineStore(url, project, **kwargs)


def fields_everywhere(cluster: RedisClusterNodes, project: str = "proj") -> dict[bytes, set[bytes]]:
    """Every field name of every data hash of ``project``, on every master."""
    out: dict[bytes, set[bytes]] = {}
    for master in cluster.masters():
        client = cluster.client(master)
        for key in client.scan_iter(match=f"{project}|*", count=1000):
            out[key] = set(client.hkeys(key))
        client.close()
    return out


# --- layout and slot placement --------------------------------------------------------------


def test_the_cluster_holds_the_single_servers_keys_spread_over_its_masters(
    redis_cluster: RedisClusterNodes, cluster_url: str, redis_url: str
) -> None:
    rows = [(k, k / 3, T0 + timedelta(seconds=k % 5), None) for k in range(3_000)]
    for store in (cluster_store(cluster_url), RedisOnlineStore(redis_url, "proj")):
        claim = store.claim(identity("v"))
        write(store, claim, rows)
        store.set_watermark(claim, Watermark(T0, None))
        store.close()
    single = redis.Redis.from_url(redis_url)
    one_server = {k[len("proj") :]: single.hgetall(k) for k in single.scan_iter(count=1000)}
    one_server[b"#meta"].pop(b"epoch")  # random: dump_project leaves it out
    single.close()
    assert dump_project(cluster_url, "proj") == one_server  # same keys, fields and bytes
    per_master = {
        m.port: sum(1 for _ in redis_cluster.client(m).scan_iter(match="proj|*", count=1000))
        for m in redis_cluster.masters()
    }
    assert sum(per_master.values()) == 3_000
    assert min(per_master.values()) > 800  # CRC16 slots spread entities evenly
    meta = redis_cluster.master_of("proj#meta")
    assert redis_cluster.client(meta).exists("proj#meta") == 1


def test_a_read_makes_one_call_per_master_holding_its_keys(
    redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    """Per master holding keys of the read, one script call (one HMGET per hash in it); on
    the meta hash's master, one HMGET of the views' generations, only once the store's
    lease on them ran out."""
    store = cluster_store(cluster_url)
    a, b = identity("a"), identity("b")
    write(store, "a", [(k, float(k), T0, None) for k in range(100)])
    write(store, "b", [(k, -float(k), T0, None) for k in range(100)])
    keys = [f"user_id=i{k}" for k in range(100)]
    store.read([KeyGroup((a, b), keys[:1])])  # the first read looks the generations up
    masters = redis_cluster.masters()
    meta = redis_cluster.master_of("proj#meta").port
    owner = dict(zip(keys, redis_cluster.owners([f"proj|{k}" for k in keys]), strict=True))
    for entities, lease in ((1, 60.0), (100, 60.0), (1, 0.0), (100, 0.0)):
        store.lease = lease
        clients = {m.port: redis_cluster.client(m) for m in masters}
        for client in clients.values():
            client.config_resetstat()
        rows = store.read([KeyGroup((a, b), keys[:entities])])
        assert [CODEC.decode(r[1])[2][0] for r in rows] == [-float(k) for k in range(entities)]
        for port, client in clients.items():
            held = sum(1 for key in keys[:entities] if owner[key] == port)
            checked = port == meta and lease == 0
            expected = {"cmdstat_config|resetstat": 1}
            if held:
                expected["cmdstat_evalsha"] = 1
            if held + checked:
                expected["cmdstat_hmget"] = held + checked
            stats = client.info("commandstats")
            # (REPLCONF: a replica's acknowledgement, each second, not a command of ours)
            calls = {name: s["calls"] for name, s in stats.items() if "replconf" not in name}
            assert calls == expected, (entities, lease, port)
            client.close()
    store.close()


def test_a_drop_is_seen_at_once_by_a_new_definition_and_within_the_lease_by_the_old(
    cluster_url: str,
) -> None:
    store, other = cluster_store(cluster_url), cluster_store(cluster_url)
    write(store, "v", [(1, 1.0, T0, None)])
    assert amounts(other, "v", [1]) == [1.0]  # the reader holds a lease on v's generation
    other.drop_view("v")
    replaced = other.claim(identity("v", "new"))
    write(other, replaced, [(1, 2.0, T0, None)])
    assert amounts(store, identity("v", "new"), [1]) == [2.0]  # a new registry: checked
    store.lease = 0.2
    assert amounts(store, "v", [1]) == [None]  # refused: another identity, and counted
    assert store.refused_rows == {"v": 1}
    store.close()
    other.close()


# --- stale writes and dead generations --------------------------------------------------------


def test_a_refused_write_leaves_no_row_behind(
    redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    store = cluster_store(cluster_url)
    run = store.claim(identity("v"))
    write(store, run, [(k, 1.0, T0, None) for k in range(500)])
    store.drop_view("v")
    new = store.claim(identity("v", "other"))
    write(store, new, [(k, 2.0, T0, None) for k in range(10)])
    with pytest.raises(OnlineStoreError, match=f"now holds generation {new.generation}"):
        write(store, run, [(k, 3.0, T0 + timedelta(days=1), None) for k in range(500)])
    # its rows landed under its dead generation (invisible), and were then deleted
    fields = fields_everywhere(redis_cluster)
    assert set().union(*fields.values()) == {str(new.generation).encode()}
    assert len(fields) == 10
    assert amounts(store, identity("v", "other"), [0, 9, 10]) == [2.0, 2.0, None]
    store.close()


def test_the_next_drop_collects_every_dead_generation_and_nothing_else(
    redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    """What a stale writer killed between its write and its claim check leaves: rows under a
    generation whose drop already collected it, with no ``retired:`` entry to find them by."""
    store = cluster_store(cluster_url)
    dead = store.claim(identity("v"))
    write(store, dead, [(k, 1.0, T0, None) for k in range(200)])
    store.drop_view("v")  # retired and collected
    live = store.claim(identity("w"))
    write(store, live, [(k, 2.0, T0, None) for k in range(200)])
    cluster = redis.cluster.RedisCluster.from_url(cluster_url)
    future = live.generation + 5  # a claim racing the collection could give it: kept
    for k in range(0, 200, 2):  # the killed writer's rows, and aggregation-tile-like fields
        cluster.hset(f"proj|user_id=i{k}", str(dead.generation), CODEC.encode(T0, None, [9, 9]))
        cluster.hset(f"proj|user_id=i{k}", f"{dead.generation}:tile:5", b"x")
        cluster.hset(f"proj|user_id=i{k}", f"{live.generation}:tile:5", b"x")
        cluster.hset(f"proj|user_id=i{k}", str(future), b"x")
    cluster.hset("other|user_id=i1", str(dead.generation), b"x")  # another project's
    assert store.drop_view("never-claimed") == 0  # nothing retired: no pass over the keys
    orphans = fields_everywhere(redis_cluster)
    assert all(
        str(dead.generation).encode() in orphans[f"proj|user_id=i{k}".encode()]
        for k in range(0, 200, 2)
    )
    later = store.claim(identity("y"))
    store.claim(identity("y", "changed"))  # retires y's generation: a pass over every key
    kept_row = str(live.generation).encode()
    kept = {kept_row, f"{live.generation}:tile:5".encode()}
    for k, names in fields_everywhere(redis_cluster).items():
        user = int(k.rsplit(b"i", 1)[1])
        assert names == (kept | {str(future).encode()} if user % 2 == 0 else {kept_row}), k
        assert str(later.generation).encode() not in names
    assert cluster.hget("other|user_id=i1", str(dead.generation)) == b"x"
    assert [f for f in cluster.hkeys("proj#meta") if f.startswith(b"retired:")] == []
    assert amounts(store, identity("w"), [0, 1]) == [2.0, 2.0]
    cluster.close()
    store.close()


# --- replication ---------------------------------------------------------------------------------


def test_a_watermark_waits_until_the_replicas_have_the_rows(
    redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    """A replica frozen (SIGSTOP) while a run writes: its master acknowledged the rows, its
    replica did not, so the watermark is refused, and moves once the replica caught up."""
    store = cluster_store(cluster_url, socket_timeout=0.6)  # WAIT gives replicas 0.3 s
    run = store.claim(identity("v"))
    master = redis_cluster.master_of("proj|user_id=i1")
    replica = next(
        redis_cluster.node(p)
        for p, m in redis_cluster.topology()["replicas"].items()
        if m == master.port
    )
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        write(store, run, [(k, 1.0, T0, None) for k in range(100)])
        with pytest.raises(
            OnlineStoreError, match=rf"0 of the 1 replicas of Redis Cluster node {master.name}"
        ):
            store.set_watermark(run, Watermark(T0, None))
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    assert store.get_watermark("v") is None
    until("the replica to catch up", lambda: store.set_watermark(run, Watermark(T0, None)) or 1)
    assert store.get_watermark("v") == Watermark(T0, None)
    store.close()


# --- configuration, credentials, TLS, discovery -------------------------------------------------


def config_for(tmp_path: Path, url: str, cluster: bool, extra: str = "") -> Any:
    (tmp_path / "featurestore.yaml").write_text(
        f"project: proj\nonline_store: {{type: redis, url: '{url}', "
        f"cluster: {str(cluster).lower()}{extra}}}\n"
    )
    return load_config(tmp_path)


def test_a_cluster_node_without_cluster_true_and_the_reverse_are_clear_errors(
    tmp_path: Path, cluster_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEATURESTORE_REDIS_URL", raising=False)
    masked = re.sub(r":[^:@/]+@", ":***@", cluster_url)
    with pytest.raises(
        ConfigError, match=re.escape(f"{masked} is a node of a Redis Cluster: add 'cluster: true'")
    ):
        open_online_store(config_for(tmp_path, cluster_url, cluster=False))
    with pytest.raises(
        ConfigError,
        match=re.escape(
            f"{redis_url} is a single Redis server (cluster mode is disabled there): remove 'cluster: true'"
        ),
    ):
        open_online_store(config_for(tmp_path, redis_url, cluster=True))


def test_the_environment_url_startup_nodes_and_passwords(
    tmp_path: Path,
    redis_cluster: RedisClusterNodes,
    cluster_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    # FEATURESTORE_REDIS_URL overrides the file's URL
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", cluster_url)
    with open_online_store(config_for(tmp_path, f"redis://127.0.0.1:{closed}/0", True)) as store:
        write(store, "v", [(1, 1.5, T0, None)])
    monkeypatch.delenv("FEATURESTORE_REDIS_URL")
    # the URL's node is down: the cluster is found through startup_nodes
    password = redis_cluster.password
    others = ", ".join(f"'127.0.0.1:{n.port}'" for n in redis_cluster.nodes[1:3])
    url = f"redis://:{password}@127.0.0.1:{closed}/0"
    config = config_for(tmp_path, url, True, f", startup_nodes: [{others}]")
    with open_online_store(config) as store:
        assert amounts(store, "v", [1]) == [1.5]
    # a wrong or missing password is named as such, never shown
    for wrong in (cluster_url.replace(password, "nope"), cluster_url.replace(f":{password}@", "")):
        with pytest.raises(OnlineStoreUnavailable, match="refused the credentials") as caught:
            open_online_store(config_for(tmp_path, wrong, True))
        assert "nope" not in str(caught.value)


@pytest.mark.slow
def test_a_tls_cluster_works_through_a_rediss_url(tmp_path: Path) -> None:
    """A real TLS-only cluster (3 masters, self-signed certificate for 127.0.0.1), verified by
    the client; without the CA it is refused."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    cluster = RedisClusterNodes(tmp_path / "tls", replicas=0, tls=(cert, key))
    try:
        url = f"rediss://127.0.0.1:{cluster.nodes[0].port}/0?ssl_ca_certs={cert}"
        store = cluster_store(url)
        store.ping()
        write(store, "v", [(k, float(k), T0, None) for k in range(50)])
        assert amounts(store, "v", [0, 49, 50]) == [0.0, 49.0, None]
        store.close()
        untrusted = cluster_store(f"rediss://127.0.0.1:{cluster.nodes[0].port}/0")
        with pytest.raises(OnlineStoreUnavailable, match="does not answer"):
            untrusted.ping()
        untrusted.close()
    finally:
        cluster.stop()


def test_a_meta_hash_lost_alone_never_gives_a_generation_its_old_rows_hold(
    redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    """The meta hash's master restarted empty (no replica took over) while the other
    masters kept the project's rows: the counter is gone, and counting from 0 again gave
    the next definition's claim the generation the old rows are stored under, so a reader
    of the new definition decoded old-layout rows with its layout (here a struct error; a
    layout of the same width reads garbage as PRESENT values). The state is made by
    deleting the meta hash, what such a restart leaves."""
    from featurestore.definitions import Field
    from featurestore.online.base import ViewIdentity
    from featurestore.online.codec import RowCodec
    from featurestore.types import Float32

    store = cluster_store(cluster_url)
    claim = store.claim(identity("v"))
    write(store, claim, [(k, float(k), T0, T0) for k in range(50)])
    redis_cluster.client(redis_cluster.master_of("proj#meta")).delete("proj#meta")
    other = RedisClusterOnlineStore(cluster_url, "proj")
    codec = RowCodec([Field(name="amount", dtype=Float32), Field(name="n", dtype=Float32)])
    changed = ViewIdentity("v", "fp2", codec.layout)
    assert other.claim(changed).generation != claim.generation
    rows = other.read([KeyGroup((changed,), [f"user_id=i{k}" for k in range(50)])])
    assert rows == [[None]] * 50  # nothing was written for the new definition
    other.drop_view("v")  # and the old rows are collected
    assert not any(fields_everywhere(redis_cluster).values())
    store.close()
    other.close()
