"""Online data never outlives the definition it was written for, on SQLite, Redis and Redis
Cluster (where a write cannot check its claim atomically: its rows stay invisible and the run
fails at the claim check after the batch).

- Reordering a view's fields (same fingerprint, new row layout) drops its online data at
  ``apply``: values never come back under each other's names.
- An ``apply`` in another process while a materialization runs (a dtype change or a reorder,
  in the middle of the run or after its last batch): the run fails naming the view, its
  watermark stays, every read is correct (never a ``struct.error``, never swapped values),
  and ``materialize-incremental`` then writes the new definition in full.
- An ``apply`` that died between dropping the online data and writing the registry: the
  registry is the truth, and re-running ``apply`` repairs it.
- Two projects sharing one SQLite file never read each other's rows.

Small batches and a progress hook interleave the apply with the run deterministically.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore, MaterializationError
from featurestore.materialize import Progress, materialize_incremental
from featurestore.online.base import open_online_store

T = datetime(2026, 2, 1, tzinfo=UTC)
USERS = 600
BATCH = 100  # entity rows per batch: a run is 6 batches
USER_IDS = list(range(USERS))

DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, FileSource
from featurestore.types import Float32, Float64, Int64

user = Entity(name="user", join_keys=["user_id"])

stats = FeatureView(
    name="stats",
    entities=[user],
    ttl=timedelta(days={ttl_days}),
    schema=[Field(name="user_id", dtype=Int64), {fields}],
    source=FileSource(path="data/stats.parquet", timestamp_field="event_ts"),
)
"""
FIELDS = {
    "first": ("a", "Float32", "b", "Float32"),
    "reorder": ("b", "Float32", "a", "Float32"),  # same fingerprint, another row layout
    "dtype": ("a", "Float64", "b", "Float32"),  # a's slot grows from 4 to 8 bytes
}


def a(user: int) -> float:
    return user + 0.5


def b(user: int) -> float:
    return -user - 0.25


def write_definitions(repo: Path, fields: str, ttl_days: int = 1) -> None:
    n1, d1, n2, d2 = FIELDS[fields]
    declared = f'Field(name="{n1}", dtype={d1}), Field(name="{n2}", dtype={d2})'
    (repo / "definitions.py").write_text(DEFINITIONS.format(fields=declared, ttl_days=ttl_days))


def make_repo(repo: Path, online: str, project: str = "defs") -> FeatureStore:
    """A repo with ``stats`` (a, b: Float32) applied; a and b differ for every user."""
    (repo / "data").mkdir(parents=True)
    (repo / "featurestore.yaml").write_text(f"project: {project}\nonline_store: {online}\n")
    write_definitions(repo, "first")
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array(USER_IDS, pa.int64()),
                "event_ts": pa.array([T - timedelta(hours=1)] * USERS, pa.timestamp("us", "UTC")),
                "a": pa.array([a(u) for u in USER_IDS], pa.float32()),
                "b": pa.array([b(u) for u in USER_IDS], pa.float32()),
            }
        ),
        repo / "data" / "stats.parquet",
    )
    store = FeatureStore(repo)
    store.apply()
    return store


@pytest.fixture(
    params=["sqlite", "redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)]
)
def online(request: pytest.FixtureRequest) -> str:
    if request.param == "redis-cluster":
        url = request.getfixturevalue("cluster_url")
        return f"{{type: redis, url: '{url}', cluster: true}}"
    if request.param == "redis":
        return f"{{type: redis, url: '{request.getfixturevalue('redis_url')}'}}"
    return "{type: sqlite, path: data/online.db}"


def read(store: FeatureStore) -> dict[str, Any]:
    """Every user's a and b online at T, with statuses."""
    got = store.get_online_features(
        features=["stats:a", "stats:b"], entity_rows={"user_id": USER_IDS}, now=T
    )
    return {**got.to_dict(), "statuses": got.statuses}


def assert_all_present(store: FeatureStore) -> None:
    got = read(store)
    assert got["a"] == [a(u) for u in USER_IDS]
    assert got["b"] == [b(u) for u in USER_IDS]
    assert set(got["statuses"]["a"]) == set(got["statuses"]["b"]) == {"PRESENT"}
    # and the same as the training-set join at T (the parity theorem, on this data)
    offline = store.get_historical_features(
        pa.table({"user_id": USER_IDS, "event_timestamp": [T] * USERS}), ["stats:a", "stats:b"]
    ).to_arrow()
    online = store.get_online_features(
        features=["stats:a", "stats:b"], entity_rows={"user_id": USER_IDS}, now=T
    ).to_arrow()
    for name in ("a", "b"):
        assert online.column(name).type == offline.column(name).type
        assert online.column(name).to_pylist() == offline.column(name).to_pylist()


def assert_all_not_found(store: FeatureStore) -> None:
    got = read(store)
    assert got["a"] == got["b"] == [None] * USERS
    assert set(got["statuses"]["a"]) == set(got["statuses"]["b"]) == {"NOT_FOUND"}


def watermark(store: FeatureStore) -> Any:
    with open_online_store(store.config) as online:
        return online.get_watermark("stats")


# --- a reorder drops the data at apply ------------------------------------------------------


def test_reordering_fields_never_swaps_online_values(tmp_path: Path, online: str) -> None:
    store = make_repo(tmp_path / "repo", online)
    store.materialize_incremental(T)
    assert_all_present(store)
    fingerprint = store.state.views["stats"].fingerprint
    write_definitions(store.repo_path, "reorder")
    assert store.apply().views_to_reset() == ["stats"]
    assert store.state.views["stats"].fingerprint == fingerprint  # models stay bound to it
    assert_all_not_found(store)  # before: each value came back under the other's name
    assert watermark(store) is None
    store.materialize_incremental(T)
    assert_all_present(store)
    store.close()


# --- an apply during a materialization ------------------------------------------------------


class ApplyAfter(Progress):
    """After ``batches`` batches are written, ``featurestore apply`` runs in another process
    (the repo's definitions already changed) and the run goes on."""

    def __init__(self, batches: int, repo: Path) -> None:
        self.left = batches
        self.repo = repo

    def batch_written(self, view: str, rows_read: int, rows_written: int) -> None:
        self.left -= 1
        if self.left == 0:
            out = subprocess.run(
                [sys.executable, "-m", "featurestore.cli", "apply", "--repo", str(self.repo)],
                capture_output=True,
                text=True,
            )
            assert out.returncode == 0, out.stderr
            assert "Online data and watermarks of stats were dropped" in out.stdout


@pytest.mark.parametrize(
    ("change", "after"),
    [("dtype", 2), ("reorder", 2), ("dtype", USERS // BATCH), ("reorder", USERS // BATCH)],
    ids=["dtype-mid-run", "reorder-mid-run", "dtype-after-last-batch", "reorder-after-last-batch"],
)
def test_an_apply_during_a_run_refuses_the_rest_of_it(
    tmp_path: Path, online: str, change: str, after: int
) -> None:
    store = make_repo(tmp_path / "repo", online)
    state = store.state  # what the run reads its definition from
    write_definitions(store.repo_path, change)
    with open_online_store(store.config) as opened, pytest.raises(MaterializationError) as caught:
        materialize_incremental(
            store.config,
            state,
            opened,
            T,
            progress=ApplyAfter(after, store.repo_path),
            batch_rows=BATCH,
        )
    message = str(caught.value)
    assert "feature view 'stats' failed" in message
    assert "changed under this run" in message
    assert "watermark did not move" in message
    assert watermark(store) is None
    # Nothing the run wrote is read with the new definition, before or after the apply:
    # the apply dropped what was written, and the store refused the rest.
    assert_all_not_found(store)
    report = store.materialize_incremental(T)
    assert report.runs[0].rows_read == USERS
    assert_all_present(store)
    assert watermark(store).end == T
    store.close()


@pytest.mark.parametrize("change", ["dtype", "reorder"])
def test_a_run_that_read_the_registry_before_an_apply_is_refused(
    tmp_path: Path, online: str, change: str
) -> None:
    """The run loaded the registry; an apply then changed the view and its new definition
    was materialized. Before: the run claimed the old definition, which dropped the new
    definition's data, wrote rows nobody could read, and reported success."""
    store = make_repo(tmp_path / "repo", online)
    stale = store.state
    write_definitions(store.repo_path, change)
    store.apply()
    store.materialize_incremental(T)
    assert_all_present(store)
    with open_online_store(store.config) as opened, pytest.raises(MaterializationError) as caught:
        materialize_incremental(store.config, stale, opened, T)
    message = str(caught.value)
    assert "feature view 'stats' failed" in message
    assert "changed in the registry" in message and "nothing was written" in message
    assert_all_present(store)  # the applied definition's data is intact
    assert watermark(store).end == T
    store.close()


# --- the registry is the truth --------------------------------------------------------------


def test_an_apply_that_died_before_writing_the_registry_is_repaired(
    tmp_path: Path, online: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_repo(tmp_path / "repo", online)
    store.materialize_incremental(T)
    write_definitions(store.repo_path, "dtype")

    drop = FeatureStore._drop_online_data

    def drops_then_dies(self: FeatureStore, plan: Any) -> None:
        drop(self, plan)
        raise OSError("killed between the online drop and the registry write")

    with monkeypatch.context() as patch:
        patch.setattr(FeatureStore, "_drop_online_data", drops_then_dies)
        with pytest.raises(OSError, match="killed between"):
            store.apply()
    assert store.state.view("stats").feature("a").dtype.name == "Float32"  # the old definition
    assert_all_not_found(store)  # its data was dropped: reads say so, nothing is mixed
    store.materialize_incremental(T)  # a run of the applied (old) definition works
    assert_all_present(store)
    assert [c.name for c in store.plan().changes] == ["stats"]
    store.apply()  # re-running apply repairs it
    assert store.state.view("stats").feature("a").dtype.name == "Float64"
    assert_all_not_found(store)
    store.materialize_incremental(T)
    assert_all_present(store)
    store.close()


# --- one SQLite file, two projects ----------------------------------------------------------


def test_two_projects_sharing_a_sqlite_file_never_see_each_other(tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "online.db"
    online = f"{{type: sqlite, path: '{shared}'}}"
    first = make_repo(tmp_path / "first", online, project="first")
    second = make_repo(tmp_path / "second", online, project="second")
    table = pq.read_table(second.repo_path / "data" / "stats.parquet")
    doubled = table.set_column(2, "a", pa.array([2 * a(u) for u in USER_IDS], pa.float32()))
    pq.write_table(doubled, second.repo_path / "data" / "stats.parquet")
    first.materialize_incremental(T)
    assert_all_present(first)
    assert_all_not_found(second)  # before: the first project's rows
    second.materialize_incremental(T)
    assert read(second)["a"] == [2 * a(u) for u in USER_IDS]
    assert_all_present(first)  # untouched by the second project's rows
    write_definitions(second.repo_path, "first", ttl_days=2)  # a fingerprint change
    assert second.apply().views_to_reset() == ["stats"]
    assert_all_not_found(second)
    assert_all_present(first)  # the second project's drop is its own
    assert watermark(first).end == T
    first.close()
    second.close()
