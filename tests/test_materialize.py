"""Materialization semantics, on SQLite and on a throwaway Redis, and its CLI.

Windows include both ends; the latest row per key is written; the watermark moves only
after the data, never backwards; incremental runs take what is newer than the last end or
created after the greatest created time written (late rows), never rows after ``end``;
offline-only views are skipped; a failure names the view and leaves its watermark; ``apply``
drops the online data and watermarks of views it changes or removes.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import (
    FeatureStore,
    MaterializationError,
    OnlineStoreUnavailable,
    UnknownFeatureError,
)
from featurestore.online.base import Watermark, open_online_store
from tests.cli import Result, run_cli

T0 = datetime(2025, 3, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
TS = pa.timestamp("us", tz="UTC")

DEFINITIONS = """\
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, FileSource
from featurestore.types import Float32, Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"])

stats = FeatureView(
    name="stats",
    entities=[user],
    ttl=timedelta(days={ttl_days}),
    schema=[Field(name="user_id", dtype=Int64), Field(name="amount", dtype=Float64),
            Field(name="city", dtype=String)],
    source=FileSource(path="data/stats", timestamp_field="event_ts",
                      created_timestamp_column="created_ts"),
)
{plain}
archive = FeatureView(
    name="archive",
    entities=[user],
    online=False,
    schema=[Field(name="user_id", dtype=Int64), Field(name="old", dtype=Float64)],
    source=FileSource(path="data/archive.parquet", timestamp_field="event_ts"),
)
"""

PLAIN = """
plain = FeatureView(
    name="plain",
    entities=[user],
    schema=[Field(name="user_id", dtype=Int64), Field(name="score", dtype=Float32)],
    source=FileSource(path="data/plain.parquet", timestamp_field="event_ts"),
)
"""


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def write_stats(
    repo: Path, name: str, rows: list[tuple[int, datetime, datetime | None, float]]
) -> None:
    """A Parquet file of ``stats`` rows: (user_id, event_ts, created_ts, amount)."""
    folder = repo / "data" / "stats"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([r[0] for r in rows], pa.int64()),
                "event_ts": pa.array([r[1] for r in rows], TS),
                "created_ts": pa.array([r[2] for r in rows], TS),
                "amount": pa.array([r[3] for r in rows], pa.float64()),
                "city": pa.array([f"city-{r[3]}" for r in rows], pa.string()),
            }
        ),
        folder / name,
    )


def write_repo(repo: Path, online: str, *, ttl_days: int = 1, plain: bool = True) -> Path:
    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "featurestore.yaml").write_text(f"project: mat\nonline_store: {online}\n")
    (repo / "definitions.py").write_text(
        DEFINITIONS.format(ttl_days=ttl_days, plain=PLAIN if plain else "")
    )
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([1, 2], pa.int64()),
                "event_ts": pa.array([at(1), at(2)], TS),
                "score": pa.array([0.5, 1.5], pa.float32()),
            }
        ),
        repo / "data" / "plain.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([1], pa.int64()),
                "event_ts": pa.array([at(1)], TS),
                "old": pa.array([1.0], pa.float64()),
            }
        ),
        repo / "data" / "archive.parquet",
    )
    return repo


@pytest.fixture(
    params=["sqlite", "redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)]
)
def online(request: pytest.FixtureRequest) -> str:
    """The ``online_store`` setting: the embedded SQLite file, a flushed throwaway Redis, or
    the flushed throwaway Redis Cluster."""
    if request.param == "redis-cluster":
        return f"{{type: redis, url: '{request.getfixturevalue('cluster_url')}', cluster: true}}"
    if request.param == "redis":
        return f"{{type: redis, url: '{request.getfixturevalue('redis_url')}'}}"
    return "{type: sqlite, path: data/online.db}"


@pytest.fixture
def repo(tmp_path: Path, online: str) -> Path:
    repo = write_repo(tmp_path, online)
    write_stats(
        repo,
        "part-0.parquet",
        [
            (1, at(0) - US, at(0), 1.0),  # just before the window used below
            (2, at(0), at(0), 2.0),  # at its start
            (3, at(5), at(6), 3.0),
            (3, at(5), at(7), 3.5),  # same event time, created later: wins
            (4, at(10), None, 4.0),  # at its end; a missing created time
            (5, at(10) + US, at(11), 5.0),  # just after its end
        ],
    )
    return repo


@pytest.fixture
def fs(repo: Path) -> Iterator[FeatureStore]:
    store = FeatureStore(repo)
    store.apply()
    yield store
    store.close()


def amounts(fs: FeatureStore, users: list[int], now: datetime) -> dict[int, Any]:
    """user -> amount online at ``now`` (None when not PRESENT), via get_online_features."""
    rows = [{"user_id": u} for u in users]
    got = fs.get_online_features(features=["stats:amount"], entity_rows=rows, now=now)
    return dict(zip(users, got.to_dict()["amount"], strict=True))


def watermark(fs: FeatureStore, view: str) -> Watermark | None:
    with open_online_store(fs.config) as store:
        return store.get_watermark(view)


def test_window_includes_both_ends_and_takes_the_latest_row(fs: FeatureStore) -> None:
    report = fs.materialize(at(0), at(10), views=["stats"])
    assert amounts(fs, [1, 2, 3, 4, 5], now=at(10)) == {1: None, 2: 2.0, 3: 3.5, 4: 4.0, 5: None}
    (run,) = report.runs
    assert (run.view, run.rows_read, run.rows_written) == ("stats", 3, 3)
    # The watermark: the run's end and the greatest created time written (not row 5's).
    assert watermark(fs, "stats") == Watermark(at(10), at(7))
    assert watermark(fs, "plain") is None


def test_a_view_named_twice_runs_once(fs: FeatureStore) -> None:
    # `--views stats,stats` ran (and reported) the view twice
    report = fs.materialize(at(0), at(10), views=["stats", "plain", "stats"])
    assert [r.view for r in report.runs] == ["stats", "plain"]


def test_naive_times_are_utc(fs: FeatureStore) -> None:
    fs.materialize(at(0).replace(tzinfo=None), at(10).replace(tzinfo=None), views=["stats"])
    assert watermark(fs, "stats") == Watermark(at(10), at(7))


def test_offline_only_views_are_skipped_and_every_step_is_logged(
    fs: FeatureStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="featurestore.materialize"):
        report = fs.materialize_incremental(at(10))
    assert report.skipped == ["archive"]
    assert [r.view for r in report.runs] == ["plain", "stats"]
    assert watermark(fs, "archive") is None
    text = caplog.text
    assert "skipped feature view archive: it is declared online=False" in text
    assert "materializing feature view stats: event_ts <= 2025-03-01T00:10:00+00:00" in text
    assert "materialized feature view stats: 4 entity rows read, 4 written" in text


def test_incremental_takes_new_and_late_rows_never_rows_after_end(
    fs: FeatureStore, repo: Path
) -> None:
    fs.materialize_incremental(at(10), views=["stats"])
    assert amounts(fs, [1, 2, 3, 4, 5], now=at(10)) == {1: 1.0, 2: 2.0, 3: 3.5, 4: 4.0, 5: None}
    write_stats(
        repo,
        "part-1.parquet",
        [
            (1, at(-5), at(20), 9.0),  # late but older than what user 1 has: not written
            (2, at(0), at(21), 2.5),  # late correction of user 2's row: written
            (3, at(4), at(6), 7.0),  # old and not late: never read
            (6, at(12), at(12), 6.0),  # new
            (7, at(30), at(30), 7.0),  # after the next end
        ],
    )
    report = fs.materialize_incremental(at(15), views=["stats"])
    (run,) = report.runs
    assert run.window.start == at(10) + US
    assert run.window.created_after == at(7)
    # Read: users 1, 2 (late), 5 (event 10m+1us), 6; user 1's late row loses to its newer one.
    assert (run.rows_read, run.rows_written) == (4, 3)
    users = [1, 2, 3, 4, 5, 6, 7]
    assert amounts(fs, users, now=at(15)) == {
        1: 1.0,
        2: 2.5,
        3: 3.5,
        4: 4.0,
        5: 5.0,
        6: 6.0,
        7: None,
    }
    assert watermark(fs, "stats") == Watermark(at(15), at(21))


def test_an_end_before_the_last_end_reads_only_late_rows_and_keeps_the_watermark_end(
    fs: FeatureStore, repo: Path
) -> None:
    fs.materialize_incremental(at(10), views=["stats"])
    write_stats(repo, "part-1.parquet", [(2, at(0), at(40), 2.5), (8, at(3), at(3), 8.0)])
    run = fs.materialize_incremental(at(5), views=["stats"]).runs[0]
    assert (run.rows_read, run.rows_written) == (1, 1)
    # the greatest created time stays: the run did not read late rows after its end
    assert watermark(fs, "stats") == Watermark(at(10), at(7))
    assert amounts(fs, [2, 8], now=at(10)) == {2: 2.5, 8: None}


def test_an_end_before_the_last_end_leaves_the_late_rows_after_it_to_the_next_run(
    fs: FeatureStore, repo: Path
) -> None:
    """A run to an end before the last end reads the late rows up to its end only; had it
    moved the greatest created time past the late rows after its end (user 9's), every later
    run would have skipped them: they were lost for good."""
    fs.materialize_incremental(at(10), views=["stats"])
    write_stats(repo, "part-1.parquet", [(2, at(0), at(40), 2.5), (9, at(8), at(40), 9.0)])
    fs.materialize_incremental(at(5), views=["stats"])
    assert amounts(fs, [2, 9], now=at(10)) == {2: 2.5, 9: None}
    fs.materialize_incremental(at(20), views=["stats"])
    assert amounts(fs, [2, 9], now=at(20)) == {2: 2.5, 9: 9.0}
    assert watermark(fs, "stats") == Watermark(at(20), at(40))


def test_late_rows_count_when_nothing_written_so_far_had_a_created_time(
    tmp_path: Path, online: str
) -> None:
    repo = write_repo(tmp_path, online)
    write_stats(repo, "part-0.parquet", [(1, at(0), None, 1.0), (2, at(3), None, 2.0)])
    fs = FeatureStore(repo)
    fs.apply()
    fs.materialize_incremental(at(10), views=["stats"])
    assert watermark(fs, "stats") == Watermark(at(10), None)
    # A correction of user 1's row (same event time, now with a created time) arrives late.
    write_stats(repo, "part-1.parquet", [(1, at(0), at(30), 1.5)])
    run = fs.materialize_incremental(at(20), views=["stats"]).runs[0]
    assert (run.rows_read, run.rows_written) == (1, 1)
    assert amounts(fs, [1, 2], now=at(20)) == {1: 1.5, 2: 2.0}
    assert watermark(fs, "stats") == Watermark(at(20), at(30))
    fs.close()


def test_rerunning_is_idempotent(fs: FeatureStore) -> None:
    first = fs.materialize(at(0), at(10), views=["stats"])
    again = fs.materialize(at(0), at(10), views=["stats"])
    assert first.runs[0].rows_written == again.runs[0].rows_written == 3  # equal pairs rewritten
    assert amounts(fs, [2, 3, 4], now=at(10)) == {2: 2.0, 3: 3.5, 4: 4.0}


def test_a_failure_names_the_view_and_leaves_its_watermark(fs: FeatureStore, repo: Path) -> None:
    fs.materialize_incremental(at(10))
    before = watermark(fs, "plain")
    (repo / "data" / "plain.parquet").unlink()
    with pytest.raises(MaterializationError, match="'plain' failed") as error:
        fs.materialize_incremental(at(20))
    assert "no Parquet file" in str(error.value)
    assert "re-run" in str(error.value)
    assert watermark(fs, "plain") == before


def test_bad_input(fs: FeatureStore) -> None:
    with pytest.raises(MaterializationError, match=r"end .* is before start"):
        fs.materialize(at(10), at(0))
    with pytest.raises(UnknownFeatureError, match="did you mean 'stats'"):
        fs.materialize(at(0), at(10), views=["stat"])
    with pytest.raises(UnknownFeatureError, match="'nope'"):
        fs.materialize_incremental(at(10), views=["nope"])


def test_an_end_after_now_is_refused_and_moves_no_watermark(fs: FeatureStore) -> None:
    """Rows dated after now would be served before they happen, and a watermark at that end
    (it never moves back) would make every later incremental run skip the rows before it."""
    fs.materialize_incremental(at(10), views=["stats"])
    before = watermark(fs, "stats")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(MaterializationError, match=r"materialize: end .* is after the current"):
        fs.materialize(at(0), tomorrow)
    with pytest.raises(MaterializationError, match=r"materialize-incremental: end .* is after"):
        fs.materialize_incremental(tomorrow)
    assert watermark(fs, "stats") == before
    # a clock a little ahead of this machine's (within FUTURE_ALLOWANCE) is taken
    fs.materialize_incremental(datetime.now(UTC) + timedelta(seconds=20), views=["stats"])


def test_apply_drops_online_data_and_watermarks_of_changed_and_removed_views(
    fs: FeatureStore, repo: Path, online: str
) -> None:
    fs.materialize_incremental(at(10))
    plain_rows = fs.get_online_features(
        features=["plain:score"], entity_rows=[{"user_id": 1}], now=at(10)
    )
    assert plain_rows.statuses["score"] == ["PRESENT"]
    write_repo(repo, online, ttl_days=2)  # stats' ttl changes its fingerprint
    assert fs.apply().views_to_reset() == ["stats"]
    assert watermark(fs, "stats") is None
    got = fs.get_online_features(features=["stats:amount"], entity_rows=[{"user_id": 3}])
    assert got.statuses["amount"] == ["NOT_FOUND"]
    assert watermark(fs, "plain") is not None  # untouched
    write_repo(repo, online, ttl_days=2, plain=False)  # plain removed
    assert fs.apply().views_to_reset() == ["plain"]
    assert watermark(fs, "plain") is None
    with open_online_store(fs.config) as store:
        assert store.drop_view("plain") == 0  # nothing of it is left


# --- the CLI -------------------------------------------------------------------------------


def cli(*args: str) -> Result:
    return run_cli(*args, env={"COLUMNS": "100"})


@pytest.mark.parametrize("online", ["sqlite"], indirect=True)
def test_cli_materializes_with_a_summary(fs: FeatureStore, repo: Path) -> None:
    out = cli("materialize", "2025-03-01", "2025-03-01T00:10:00Z", "--repo", str(repo))
    assert out.returncode == 0, out.stderr
    assert "plain" in out.stdout and "stats" in out.stdout
    assert "skipped: online=False" in out.stdout  # archive
    assert amounts(fs, [2, 3, 4], now=at(10)) == {2: 2.0, 3: 3.5, 4: 4.0}
    out = cli("materialize-incremental", "now", "--repo", str(repo), "--views", "stats")
    assert out.returncode == 0, out.stderr
    assert watermark(fs, "stats").end > at(10)  # type: ignore[union-attr]


@pytest.mark.parametrize("online", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["materialize", "yesterday", "now"], 2, "'yesterday' is not an ISO-8601 time"),
        (["materialize", "2025-03-01", "2025-02-30"], 2, "'2025-02-30' is not an ISO-8601"),
        (["materialize", "2025-03-02", "2025-03-01"], 1, "is before start"),
        (["materialize-incremental", "now", "--views", "stats,nope"], 1, "no feature view 'nope'"),
        (["materialize", "2025-03-01", "now", "--views", "stat"], 1, "did you mean 'stats'"),
    ],
)
def test_cli_bad_input(
    repo: Path, fs: FeatureStore, args: list[str], code: int, message: str
) -> None:
    out = cli(*args, "--repo", str(repo))
    assert out.returncode == code
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert watermark(fs, "stats") is None


def test_apply_that_cannot_drop_online_data_changes_nothing(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    online = f"{{type: redis, url: 'redis://127.0.0.1:{port}/0', socket_timeout: 0.5}}"
    repo = write_repo(tmp_path, online)
    write_stats(repo, "part-0.parquet", [(1, at(0), at(0), 1.0)])
    fs = FeatureStore(repo)
    fs.apply()  # nothing to drop: the online store is not touched
    write_repo(repo, online, ttl_days=2)
    with pytest.raises(OnlineStoreUnavailable, match="apply must first drop the online data"):
        fs.apply()
    assert fs.plan().views_to_reset() == ["stats"]  # the registry still holds the old view


NAMED_LIKE_TIMES = """
from featurestore import Entity, FeatureView, Field, FileSource, PushSource
from featurestore.types import Int64, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"])
times = PushSource(
    name="times_push",
    batch_source=FileSource(path="data/times", timestamp_field="ts", created_timestamp_column="cr"),
)
# features named like the columns materialization's rows carry their event and created times in
times_view = FeatureView(
    name="times_view",
    entities=[user],
    schema=[Field(name="event_ts", dtype=UnixTimestamp), Field(name="created_ts", dtype=Int64)],
    source=times,
)
"""


def test_features_named_event_ts_and_created_ts_are_served_as_trained(
    tmp_path: Path, online: str
) -> None:
    (tmp_path / "data" / "times").mkdir(parents=True)
    (tmp_path / "featurestore.yaml").write_text(f"project: mat\nonline_store: {online}\n")
    (tmp_path / "definitions.py").write_text(NAMED_LIKE_TIMES)
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([1, 1], pa.int64()),
                "ts": pa.array([at(1), at(0)], TS),
                "cr": pa.array([at(1), at(9)], TS),
                "event_ts": pa.array([long_ago, at(99)], TS),  # the older row's is later
                "created_ts": pa.array([7, 8], pa.int64()),
            }
        ),
        tmp_path / "data" / "times" / "part-0.parquet",
    )
    fs = FeatureStore(tmp_path)
    fs.apply()
    refs = ["times_view:event_ts", "times_view:created_ts"]
    fs.materialize(at(0), at(1))
    entities = pa.table({"user_id": [1, 5], "event_timestamp": pa.array([at(1)] * 2, TS)})
    expected = {"event_ts": [long_ago, None], "created_ts": [7, None]}
    online = fs.get_online_features(refs, [{"user_id": 1}, {"user_id": 5}], now=at(1))
    assert (
        fs.get_historical_features(entities, refs).to_arrow().select(expected).to_pydict()
        == (online.to_arrow().select(expected).to_pydict())
        == expected
    )
    pushed = pd.DataFrame(
        {"user_id": [5], "ts": [at(2)], "event_ts": [long_ago], "created_ts": [9]}
    )
    fs.push("times_push", pushed, to="online")
    online = fs.get_online_features(refs, [{"user_id": 5}], now=at(2))
    assert online.to_dict() == {"user_id": [5], "event_ts": [long_ago], "created_ts": [9]}
    fs.close()
