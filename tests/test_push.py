"""Pushes: online through the never-regress write, offline as new files read after the
source's (in push order), all or nothing, with concurrent pushers and retries, and a failure
between the two paths that says how to finish. (Random data: test_parity_transforms_push.py.)"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from featurestore import (
    FeatureStore,
    OnlineStoreUnavailable,
    PushError,
    PushMode,
    UnknownPushSourceError,
)
from featurestore.definitions import FileSource
from featurestore.sources import parquet_files, push_folder
from featurestore.types import FUTURE_ALLOWANCE
from tests.transform_repo import ODFV, T0, write_definitions, write_repo

HOUR = timedelta(hours=1)
LATER = T0 + 2 * HOUR
FEATURES = ["stats:avg", "stats:cnt", "stats:tag"]
KEYS = [1, 2, 5]


def rows(**overrides: Any) -> pd.DataFrame:
    """Users 1 (newer than its file rows) and 5 (new), at T0 + 2h."""
    base = {
        "user_id": [1, 5],
        "ts": [LATER, LATER],
        "avg": [30.0, 7.0],
        "cnt": [10, 11],
        "tag": ["p", "q"],
    }
    return pd.DataFrame({**base, **overrides})


def answers(store: FeatureStore, at: datetime = LATER) -> tuple[list[Any], list[Any]]:
    """(online, offline) rows of every key at ``at``: they must agree."""
    online = store.get_online_features(FEATURES, [{"user_id": k} for k in KEYS], now=at)
    entity_df = pd.DataFrame({"user_id": KEYS, "event_timestamp": [at] * len(KEYS)})
    offline = store.get_historical_features(entity_df, FEATURES).to_arrow()
    columns = ["avg", "cnt", "tag"]
    return (
        online.to_arrow().select(columns).to_pylist(),
        offline.select(columns).to_pylist(),
    )


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = write_repo(tmp_path)
    store.apply()
    store.materialize(T0 - timedelta(days=10), T0 + HOUR)
    yield store
    store.close()


def pushed_files(store: FeatureStore) -> list[Path]:
    return sorted((store.repo_path / "data" / "stats" / "_pushed").glob("*.parquet"))


def test_a_push_online_and_offline_is_served_and_trained_on_alike(store) -> None:  # type: ignore[no-untyped-def]
    report = store.push("stats_push", rows(), to=PushMode.ONLINE_AND_OFFLINE)
    assert (report.rows, report.views, report.online_written) == (2, ("stats",), {"stats": 2})
    online, offline = answers(store)
    assert online == offline
    assert offline[0] == {"avg": 30.0, "cnt": 10, "tag": "p"}
    assert offline[2] == {"avg": 7.0, "cnt": 11, "tag": "q"}
    (file,) = pushed_files(store)
    assert file.name.startswith("push-000000000001-") and file == report.offline_file
    batch = pq.read_schema(store.repo_path / "data" / "stats" / "part-0.parquet")
    assert pq.read_schema(file).remove_metadata() == batch.remove_metadata()
    # A pushed row without a created time got the push time.
    created = pq.read_table(file)["created"].to_pylist()
    assert all(abs(c - datetime.now(UTC)) < timedelta(minutes=5) for c in created)


def test_push_order_is_file_order_and_a_later_push_wins_a_complete_tie(store) -> None:  # type: ignore[no-untyped-def]
    created = {"created": [LATER, LATER]}
    store.push("stats_push", rows(**created), to="online_and_offline")
    store.push("stats_push", rows(avg=[31.0, 8.0], **created), to="online_and_offline")
    assert [f.name[:17] for f in pushed_files(store)] == ["push-000000000001", "push-000000000002"]
    source = FileSource(path="data/stats", timestamp_field="ts")
    assert parquet_files(source, store.repo_path)[1:] == pushed_files(store)
    online, offline = answers(store)
    assert online == offline
    assert offline[0]["avg"] == 31.0
    # Materializing again leaves the same state (the pushed rows win offline too).
    store.materialize(T0 - timedelta(days=10), LATER)
    assert answers(store) == (online, offline)


def test_online_only_and_offline_only_pushes(store) -> None:  # type: ignore[no-untyped-def]
    before = answers(store)
    store.push("stats_push", rows(), to="online")  # Feast's default mode
    assert not pushed_files(store)
    online, offline = answers(store)
    assert offline == before[1] and online[0]["avg"] == 30.0  # online-only, by definition
    store.push("stats_push", rows(avg=[40.0, 9.0]), to="offline")
    online_after, offline_after = answers(store)
    assert online_after == online and offline_after[0]["avg"] == 40.0
    # The offline rows are late rows to incremental materialization (created at push time).
    store.materialize_incremental(LATER)
    assert answers(store) == (offline_after, offline_after)


BAD = {
    "a missing feature": (rows().drop(columns="tag"), r"column 'tag' \(feature of view 'stats'\)"),
    "a missing event time": (
        rows().drop(columns="ts"),
        r"column 'ts' \(the event time\) is missing",
    ),
    "a string key": (rows(user_id=["1", "5"]), r"join key 'user_id' is Int64 but the rows hold"),
    "a null key": (rows(user_id=pd.array([1, None], "Int64")), r"row 1 has a null 'user_id'"),
    "a float key": (rows(user_id=[1, None]), r"hold double .* use the nullable dtype 'Int64'"),
    "a null event time": (rows(ts=[LATER, None]), r"row 1 has a null 'ts'"),
    "an ancient event": (rows(ts=[LATER, datetime(1600, 1, 1)]), r"outside the accepted range"),
    # online would serve it before it happens, and keep it over every real row until then
    "a future event": (
        rows(ts=[LATER, datetime.now(UTC) + timedelta(days=1)]),
        r"row 1 has event time .* after the push time",
    ),
    "a fraction for an integer": (rows(cnt=[1.5, 2.0]), r"column 'cnt' is Int64, .*1\.5"),
    # one line naming the row and the value (was pandas' message over several lines)
    "a bad time string": (
        rows(ts=[LATER.isoformat(), "soon"]),
        r"^push to 'stats_push': event time 'ts': row 1 holds 'soon', which is not a "
        r"timestamp; use ISO 8601 like '2024-05-01T12:00:00Z'$",
    ),
    "a bad created string": (
        rows(created=[LATER.isoformat(), "later"]),
        r"^push to 'stats_push': created time 'created': row 1 holds 'later', which is not",
    ),
    # a created time .to_df() cannot hold was taken (only event times were range-checked)
    "an ancient created time": (
        rows(created=[LATER, datetime(1500, 1, 1)]),
        r"created time 1500-01-01T00:00:00\+00:00 is outside the accepted range",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_refused_push_writes_nothing_anywhere(store, case: str) -> None:  # type: ignore[no-untyped-def]
    given, message = BAD[case]
    before = answers(store)
    with pytest.raises(PushError, match=message):
        store.push("stats_push", given, to="online_and_offline")
    assert not pushed_files(store)
    assert answers(store) == before


def test_an_empty_push_is_checked_and_writes_no_file(store) -> None:  # type: ignore[no-untyped-def]
    """Defect: a push of no rows wrote an empty Parquet file (and took a sequence number)."""
    before = answers(store)
    report = store.push("stats_push", rows().iloc[:0], to="online_and_offline")
    assert report.rows == 0 and report.offline_file is None
    assert not pushed_files(store) and answers(store) == before
    with pytest.raises(PushError, match=r"column 'tag' \(feature of view 'stats'\)"):
        store.push("stats_push", rows().iloc[:0].drop(columns="tag"), to="offline")


def test_an_event_time_within_the_clock_allowance_of_the_push_time_is_taken(store) -> None:  # type: ignore[no-untyped-def]
    """A pusher whose clock runs a little ahead is not refused (see FUTURE_ALLOWANCE)."""
    pushed_at = LATER + HOUR
    soon = pushed_at + FUTURE_ALLOWANCE
    store.push("stats_push", rows(ts=[soon, soon]), to="online_and_offline", now=pushed_at)
    with pytest.raises(PushError, match="after the push time"):
        store.push(
            "stats_push",
            rows(ts=[soon, soon + timedelta(microseconds=1)]),
            to="online",
            now=pushed_at,
        )


def test_an_unknown_source_or_mode_is_refused(store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownPushSourceError, match=r"'stats_psh' \(did you mean 'stats_push'"):
        store.push("stats_psh", rows())
    with pytest.raises(PushError, match="not a push mode"):
        store.push("stats_push", rows(), to="everywhere")


def test_a_retried_push_appends_again_and_changes_no_answer(store) -> None:  # type: ignore[no-untyped-def]
    store.push("stats_push", rows(created=[LATER, LATER]), to="online_and_offline")
    first = answers(store)
    store.push("stats_push", rows(created=[LATER, LATER]), to="online_and_offline")
    assert len(pushed_files(store)) == 2
    assert answers(store) == first


def test_several_views_over_one_push_source_each_get_the_rows(tmp_path: Path) -> None:
    write_repo(tmp_path)
    second = """
twin = FeatureView(name="twin", entities=[user], schema=[Field(name="avg", dtype=Float64)],
                   source=stats.source)
"""
    write_definitions(tmp_path, second, "")
    store = FeatureStore(tmp_path)
    store.apply()
    report = store.push("stats_push", rows(), to="online_and_offline")
    assert report.views == ("stats", "twin") and report.online_written == {"stats": 2, "twin": 2}
    read = store.get_online_features(["twin:avg"], [{"user_id": 5}], now=LATER)
    assert read.to_dict()["avg"] == [7.0]
    store.close()


def test_a_single_file_source_pushes_into_a_companion_folder_read_after_it(tmp_path: Path) -> None:
    source = FileSource(path="data/stats.parquet", timestamp_field="ts")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stats.parquet").write_bytes(b"")
    companion = push_folder(source, tmp_path)
    assert companion == tmp_path / "data" / "stats.parquet.pushed"
    companion.mkdir()
    for name in ("push-000000000002-b.parquet", "push-000000000001-a.parquet", ".push-x.tmp"):
        (companion / name).write_bytes(b"")
    assert [p.name for p in parquet_files(source, tmp_path)] == [
        "stats.parquet",
        "push-000000000001-a.parquet",
        "push-000000000002-b.parquet",
    ]


PUSHER = """
import sys
from datetime import datetime
import numpy as np
import pandas as pd
from featurestore import FeatureStore

repo, who = sys.argv[1], int(sys.argv[2])
store = FeatureStore(repo)
at = datetime.fromisoformat(sys.argv[3])
for i in range(5):
    rows = pd.DataFrame({"user_id": [1, 5], "ts": [at, at], "created": [at, at],
                         "avg": [100.0 * who + i, 1.0], "cnt": [who, i], "tag": ["w", "w"]})
    store.push("stats_push", rows, to="online_and_offline")
"""


def test_concurrent_pushers_take_turns_so_both_paths_resolve_ties_alike(
    tmp_path: Path, redis_url: str
) -> None:
    store = write_repo(tmp_path, online=redis_url)
    store.apply()
    store.materialize(T0 - timedelta(days=10), T0 + HOUR)
    # Three processes push complete ties (same keys, event and created times) at once.
    pushers = [
        subprocess.Popen([sys.executable, "-c", PUSHER, str(tmp_path), str(w), LATER.isoformat()])
        for w in (1, 2, 3)
    ]
    assert [p.wait(120) for p in pushers] == [0, 0, 0]
    files = pushed_files(store)
    assert [int(f.name.split("-")[1]) for f in files] == list(range(1, 16))
    online, offline = answers(store)
    assert online == offline
    last = pq.read_table(files[-1]).to_pylist()[0]
    assert offline[0]["avg"] == last["avg"]  # the last file's row won, online too
    store.close()


def test_an_online_failure_after_the_file_is_written_says_to_retry_online(
    tmp_path: Path, redis_factory: Any
) -> None:
    from featurestore.online.base import open_online_store
    from featurestore.push import push

    server = redis_factory()
    store = write_repo(tmp_path, online=server.url)
    store.apply()
    store.materialize(T0 - timedelta(days=10), T0 + HOUR)
    server.stop()
    with pytest.raises(OnlineStoreUnavailable):  # the store is checked first: nothing written
        store.push("stats_push", rows(), to="online_and_offline")
    assert not pushed_files(store)
    # A store that dies between the file and the online write (as the service's may):
    online = open_online_store(store.config, check=False)
    with pytest.raises(PushError, match=r"committed offline .*push-000000000001.*to='online'"):
        push(
            store.state,
            tmp_path,
            "stats_push",
            rows(),
            "online_and_offline",
            online,
            registry=store.registry,
        )
    online.close()
    assert len(pushed_files(store)) == 1
    server.start()  # an empty server: materialize, then finish the push online
    store.materialize(T0 - timedelta(days=10), T0 + HOUR)
    store.push("stats_push", rows(), to="online")
    online_answer, offline_answer = answers(store)
    assert online_answer == offline_answer
    store.close()


def test_an_online_push_into_an_offline_only_view_is_refused(tmp_path: Path) -> None:
    write_repo(tmp_path)
    write_definitions(tmp_path, "", "")
    definitions = tmp_path / "definitions.py"
    offline_only = "ttl=timedelta(days=1), online=False,"
    definitions.write_text(definitions.read_text().replace("ttl=timedelta(days=1),", offline_only))
    store = FeatureStore(tmp_path)
    store.apply()
    with pytest.raises(PushError, match=r"\['stats'\] are not served online.*to='offline'"):
        store.push("stats_push", rows(), to="online_and_offline")
    assert store.push("stats_push", rows(), to="offline").offline_file is not None


def test_an_aggregated_view_cannot_read_a_push_source() -> None:
    """Pushes into aggregation views are refused where the view is defined, naming it."""
    from featurestore import Aggregation, DefinitionError, Entity, FeatureView, PushSource

    pushed = PushSource(
        name="txn_push",
        batch_source=FileSource(path="data/txn.parquet", timestamp_field="ts"),
    )
    with pytest.raises(DefinitionError, match=r"'user_txn'.*push source 'txn_push'"):
        FeatureView(
            name="user_txn",
            entities=[Entity(name="user", join_keys=["user_id"])],
            source=pushed,
            aggregations=[
                Aggregation(column="amount", function="sum", time_window=timedelta(hours=1))
            ],
        )


def test_a_push_that_read_the_registry_before_an_apply_is_refused(store) -> None:  # type: ignore[no-untyped-def]
    """A pusher (the service) holding the registry from before an apply that changed the
    view: refused, and the applied definition's online data is left as it was (before, its
    claim for the old definition dropped that data and the push reported success)."""
    from featurestore import RegistryError
    from featurestore.online.base import open_online_store
    from featurestore.push import push

    store.push("stats_push", rows(), to="online")  # the registry's settled state is cached now
    stale = store.state
    definitions = store.repo_path / "definitions.py"
    definitions.write_text(definitions.read_text().replace("days=1", "days=2"))
    store.apply()
    store.materialize(T0 - timedelta(days=10), T0 + HOUR)
    before = answers(store)
    online = open_online_store(store.config)
    with pytest.raises(RegistryError, match="'stats' changed in the registry"):
        push(
            stale, store.repo_path, "stats_push", rows(), "online", online, registry=store.registry
        )
    online.close()
    assert answers(store) == before
    store.push("stats_push", rows(), to="online")  # with the applied definition: accepted
    assert answers(store)[0][0]["avg"] == 30.0


NARROW = """
from featurestore.types import Int32

narrow = FeatureView(
    name="narrow",
    entities=[user],
    schema=[Field(name="x32", dtype=Float32), Field(name="n32", dtype=Int32)],
    source=PushSource(name="narrow_push", batch_source=FileSource(path="data/narrow",
                                                                 timestamp_field="ts")),
)
"""


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("x32", 1e39, r"column 'x32' is Float32, and row 1 holds 1e\+39, beyond Float32's range"),
        ("x32", -1e39, r"column 'x32' is Float32, and row 1 holds -1e\+39, beyond"),
        ("n32", 2**31, r"column 'n32' is Int32, and row 1 holds 2147483648, which does not fit"),
    ],
)
def test_a_value_beyond_a_narrow_dtype_is_refused_naming_column_row_and_value(
    tmp_path: Path, column: str, value: Any, message: str
) -> None:
    """Defect: a finite Float32 value beyond float32's range (1e39) was stored online and
    offline as Infinity; now it is refused like an Int32 value beyond int32's range, by the
    one rule (``types.coerce``), with the row and the value."""
    import pyarrow as pa

    write_repo(tmp_path, ODFV + NARROW)
    (tmp_path / "data" / "narrow").mkdir()
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([1], pa.int64()),
                "ts": pa.array([T0], pa.timestamp("us", tz="UTC")),
                "x32": pa.array([1.0], pa.float32()),
                "n32": pa.array([1], pa.int32()),
            }
        ),
        tmp_path / "data" / "narrow" / "part-0.parquet",
    )
    store = FeatureStore(tmp_path)
    store.apply()
    given = {"user_id": [1, 2], "ts": [LATER, LATER], "x32": [0.5, 0.25], "n32": [1, 2]}
    given[column][1] = value
    with pytest.raises(PushError, match=message):
        store.push("narrow_push", given, to="online_and_offline")
    assert not list((tmp_path / "data" / "narrow").glob("_pushed/*.parquet"))
    read = store.get_online_features(["narrow:x32"], [{"user_id": 1}, {"user_id": 2}], now=LATER)
    assert read.statuses["x32"] == ["NOT_FOUND", "NOT_FOUND"]
    store.close()


def test_a_float64_feature_over_a_float32_column_is_served_as_its_files_store_it(
    tmp_path: Path,
) -> None:
    """Defect: a Float64 feature may read a float32 source column (a widening apply takes);
    a pushed 0.1 was served online as 0.1 but written to the file as float32, so training
    read 0.10000000149011612 (a parity break), and 1e39 was written as Infinity. The pushed
    value is now served as the files store it (what materialization serves too), and one
    beyond float32's range is refused, naming the row and the value."""
    import pyarrow as pa

    store = write_repo(tmp_path)
    part = tmp_path / "data" / "stats" / "part-0.parquet"
    table = pq.read_table(part)
    table = table.set_column(
        table.column_names.index("avg"), "avg", table["avg"].cast(pa.float32())
    )
    pq.write_table(table, part)
    store = FeatureStore(tmp_path)
    store.apply()
    store.materialize(T0 - timedelta(days=10), T0 + HOUR)
    store.push("stats_push", rows(avg=[0.1, 7.0]), to="online_and_offline")
    online, offline = answers(store)
    assert online == offline
    assert online[0]["avg"] == float(np.float32(0.1)) != 0.1
    with pytest.raises(PushError, match=r"column 'avg' .*float32.* row 1 holds 1e\+39"):
        store.push("stats_push", rows(avg=[0.5, 1e39]), to="online")
    assert answers(store) == (online, offline)
    store.close()


@pytest.mark.parametrize("to", ["online", "offline"])
def test_an_unreadable_first_source_file_is_a_push_error_naming_it(
    store: FeatureStore, to: str
) -> None:
    """Defect: the source's first file, whose schema every push file takes, was read
    unchecked: a damaged one gave pyarrow's ArrowInvalid traceback (a 500 over HTTP)."""
    part = store.repo_path / "data" / "stats" / "part-0.parquet"
    part.write_bytes(b"not parquet")
    with pytest.raises(PushError, match=r"cannot read the schema of .*part-0\.parquet"):
        store.push("stats_push", rows(), to=to)
    assert not pushed_files(store)
