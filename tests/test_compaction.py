"""Compaction of pushed files (featurestore/compaction.py): fewer files, the same answers
before, at every step of a merge, and after; pushes during a compaction keep their order;
an interrupted run is finished by the next."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore, RetrievalError
from featurestore.compaction import compact_pushes, delete_merged, write_merged
from featurestore.definitions import FileSource
from featurestore.sources import parquet_files, pushed_files
from tests.cli import run_cli
from tests.transform_repo import T0, write_repo

HOUR = timedelta(hours=1)
SOURCE = FileSource(path="data/stats", timestamp_field="ts", created_timestamp_column="created")
KEYS = [1, 2, 5, 7]
TIMES = [T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 5 * HOUR]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    store = write_repo(tmp_path)
    store.apply()
    yield store
    store.close()


def push_batches(store: FeatureStore, n: int, first: int = 0) -> None:
    """``n`` offline pushes: complete ties across pushes (same key, event and created time;
    the later push must win), late rows, rows without a created time (the push time)."""
    for i in range(first, first + n):
        at = T0 + HOUR + timedelta(minutes=10 * (i % 5))
        store.push(
            "stats_push",
            pd.DataFrame(
                {
                    "user_id": [1, 5, 2 + i % 2],
                    "ts": [T0 + 2 * HOUR, at, at - 3 * HOUR],
                    "created": [T0 + 2 * HOUR, None, at],
                    "avg": [float(i), i / 3, -float(i)],
                    "cnt": [i, 2 * i, 3 * i],
                    "tag": [f"p{i}", None, "late"],
                }
            ),
            to="offline",
            now=T0 + 4 * HOUR + timedelta(seconds=i),
        )


def training_set(store: FeatureStore) -> pa.Table:
    entity_df = pd.DataFrame(
        {
            "user_id": [k for k in KEYS for _ in TIMES],
            "event_timestamp": [t for _ in KEYS for t in TIMES],
        }
    )
    return store.get_historical_features(
        entity_df, ["stats:avg", "stats:cnt", "stats:tag"], as_of="created"
    ).to_arrow()


def online(store: FeatureStore, at: datetime) -> pa.Table:
    store.materialize(T0 - timedelta(days=10), at)
    return store.get_online_features(
        ["stats:avg", "stats:cnt", "stats:tag"], [{"user_id": k} for k in KEYS], now=at
    ).to_arrow()


def read_rows(store: FeatureStore) -> int:
    """Rows of every file a read takes: each row must be read once."""
    return sum(pq.read_metadata(p).num_rows for p in parquet_files(SOURCE, store.repo_path))


def folder(store: FeatureStore) -> Path:
    return store.repo_path / "data" / "stats" / "_pushed"


def test_compaction_merges_the_pushes_and_changes_no_answer(store: FeatureStore) -> None:
    push_batches(store, 12)
    before, rows = training_set(store), read_rows(store)
    online_before = online(store, T0 + 6 * HOUR)
    assert before["avg"][1].as_py() == 11.0  # user 1 at T0+2h: the last of 12 tied pushes

    (report,) = store.compact_pushes()
    assert (report.files_before, report.files_after, report.rows) == (12, 1, 36)
    (merged,) = pushed_files(folder(store))
    assert merged.name == "push-000000000012-merged-000000000001.parquet"
    assert training_set(store).equals(before) and read_rows(store) == rows
    store._online_reader().store.drop_view("stats")  # online rebuilt from the merged file
    assert online(store, T0 + 6 * HOUR).equals(online_before)

    push_batches(store, 1, first=99)  # after the merged file: it wins the tie
    assert pushed_files(folder(store))[-1].name.startswith("push-000000000013-")
    assert training_set(store)["avg"][1].as_py() == 99.0


def test_every_step_of_a_merge_reads_the_same_rows(store: FeatureStore) -> None:
    push_batches(store, 6)
    before, rows = training_set(store), read_rows(store)
    run = pushed_files(folder(store))
    merged, count = write_merged(run, "test")  # renamed in; the pushes not deleted yet
    assert count == 18
    assert len(list(folder(store).glob("*.parquet"))) == 7
    assert pushed_files(folder(store)) == [merged]
    assert training_set(store).equals(before) and read_rows(store) == rows
    delete_merged(run[:3])  # interrupted half way
    assert training_set(store).equals(before) and read_rows(store) == rows
    # the next run removes what is left of the interrupted one, and a stray temporary file
    (folder(store) / ".push-000000000099-x.parquet.tmp").write_bytes(b"half a file")
    store.compact_pushes()
    assert sorted(p.name for p in folder(store).iterdir() if p.suffix != ".lock") == [merged.name]
    assert training_set(store).equals(before) and read_rows(store) == rows


def test_runs_respect_the_target_size_and_merge_again(store: FeatureStore) -> None:
    push_batches(store, 9)
    before = training_set(store)
    size = pushed_files(folder(store))[0].stat().st_size
    (report,) = compact_pushes(store.state, store.repo_path, target_bytes=3 * size + size // 2)
    assert (report.files_before, report.files_after) == (9, 3)
    assert [p.name[5:17] for p in pushed_files(folder(store))] == [
        "000000000003",
        "000000000006",
        "000000000009",
    ]
    assert training_set(store).equals(before)
    (again,) = store.compact_pushes()  # merged files merge again
    assert again.files_after == 1 and training_set(store).equals(before)


def test_pushes_during_a_compaction_keep_their_order(store: FeatureStore) -> None:
    size_of_one = 2_500  # a small target: many runs, each under the lock in turn
    stop = threading.Event()
    errors: list[BaseException] = []

    def compact() -> None:
        compacting = FeatureStore(store.repo_path)
        while not stop.is_set():
            try:
                compact_pushes(compacting.state, compacting.repo_path, target_bytes=size_of_one * 4)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    base = read_rows(store)  # the source's own files
    thread = threading.Thread(target=compact)
    thread.start()
    try:
        push_batches(store, 30)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    assert read_rows(store) == base + 90  # every pushed row, once
    assert training_set(store)["avg"][1].as_py() == 29.0  # the last push still wins its tie
    store.compact_pushes()
    assert len(pushed_files(folder(store))) == 1 and read_rows(store) == base + 90
    assert training_set(store)["avg"][1].as_py() == 29.0


def test_files_of_another_schema_are_not_merged_together(store: FeatureStore) -> None:
    push_batches(store, 2)
    source_file = store.repo_path / "data" / "stats" / "part-0.parquet"
    table = pq.read_table(source_file)
    pq.write_table(table.append_column("extra", pa.nulls(table.num_rows, pa.string())), source_file)
    push_batches(store, 2, first=2)  # written with the new first file's schema
    (report,) = store.compact_pushes()
    assert (report.files_before, report.files_after) == (4, 2)


def test_the_command(store: FeatureStore) -> None:
    push_batches(store, 3)
    result = run_cli("compact-pushes", "--repo", store.repo_path)
    assert result.returncode == 0, result.stderr
    assert "3 files -> 1 (9 rows merged)" in result.stdout
    unknown = run_cli("compact-pushes", "--repo", store.repo_path, "--source", "stat_push")
    assert unknown.returncode == 1 and "stats_push" in unknown.stderr


def test_a_job_listed_before_a_merge_says_to_build_it_again(store: FeatureStore) -> None:
    push_batches(store, 3)
    entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [T0 + 3 * HOUR]})
    job = store.get_historical_features(entity_df, ["stats:avg"])  # lists the files now
    store.compact_pushes()
    with pytest.raises(RetrievalError, match=r"is gone .*compact-pushes.*build the job again"):
        job.to_arrow()
    again = store.get_historical_features(entity_df, ["stats:avg"]).to_arrow()
    assert again["avg"].to_pylist() == [2.0]


def test_a_source_never_pushed_offline_has_nothing_to_compact(store: FeatureStore) -> None:
    (report,) = store.compact_pushes()
    assert (report.files_before, report.files_after, report.rows) == (0, 0, 0)
    assert not folder(store).exists()  # no folder made for nothing
